"""Golden cases of relative_positional_embedding (BoTNet's RelativePositionalEmbedding, spec §4.10): the
reference's computation with torch operators — q·table over the whole 2P − 1 table, then the
"rel_to_abs" reshape trick (not the gather the C++ layer uses), the height part on the (W, H)
transposed query — and load_resized_weights against PyTorch's interpolate."""

import torch

from common import Case, case

MODES = {"bilinear": dict(mode="bilinear", align_corners=False), "nearest": dict(mode="nearest-exact")}


def rel_to_abs(rel, pos_dim):
    """[..., n_q, 2P − 1] -> [..., n_q, P] by the reference's reshape trick."""
    *lead, nq, dim = rel.shape
    if pos_dim == 1:
        return rel
    if nq == 1:
        return rel[..., -pos_dim:]
    gap = pos_dim - nq
    flat = rel.reshape(*lead, nq * dim)[..., nq - 1:-1]
    return flat.reshape(*lead, nq, 2 * (pos_dim - 1))[..., gap:pos_dim + gap]


def reference(q, r_height, r_width, ph, pw, absolute, dynamic):
    """[B, h, H, W, d] -> [B, h, H, W, Ph, Pw]."""
    if absolute:
        lw = torch.matmul(q, r_width)
        lh = torch.matmul(q, r_height)
    else:
        lw = rel_to_abs(torch.matmul(q, r_width), pw)
        qh = q.transpose(2, 3)
        lh = rel_to_abs(torch.matmul(qh, r_height), ph).transpose(2, 3)
    out = lh[..., :, None] + lw[..., None, :]
    if dynamic:
        out = out[..., :q.shape[2], :q.shape[3]]
    return out


def forward_case(d, shape, position_height=0, position_width=0, absolute=False, dynamic=False):
    b, h, hh, ww, dim = shape
    ph = max(position_height, hh)
    pw = max(position_width if position_width > 0 else position_height, ww)
    q = d.uniform(*shape)
    r_height = d.uniform(dim, ph if absolute else 2 * ph - 1)
    r_width = d.uniform(dim, pw if absolute else 2 * pw - 1)
    out = reference(q, r_height, r_width, ph, pw, absolute, dynamic)
    config = {"input_shape": [h, hh, ww, dim]}
    for key, value, default in (("position_height", position_height, 0), ("position_width", position_width, 0),
                                ("use_absolute_pos", absolute, False), ("dynamic_shape", dynamic, False)):
        if value != default:
            config[key] = value
    return Case({"input/query": q, "weights/r_height": r_height, "weights/r_width": r_width,
                 "expected/output": out.reshape(b, h, hh, ww, -1)}, config)


@case("relative_positional_embedding", "relative_7x9")
def relative_7x9(d):
    return forward_case(d, (2, 2, 7, 9, 6))


@case("relative_positional_embedding", "relative_larger_keys")
def relative_larger_keys(d):
    return forward_case(d, (1, 3, 4, 2, 5), position_height=6, position_width=10)


@case("relative_positional_embedding", "relative_single_row")
def relative_single_row(d):
    return forward_case(d, (2, 1, 1, 5, 4), position_height=3)


@case("relative_positional_embedding", "relative_dynamic_crop")
def relative_dynamic_crop(d):
    return forward_case(d, (1, 2, 3, 4, 4), position_height=5, dynamic=True)


@case("relative_positional_embedding", "absolute_5x3")
def absolute_5x3(d):
    return forward_case(d, (2, 2, 5, 3, 7), absolute=True)


def resize_case(d, method, dim, src, dst, absolute):
    """Old tables of lengths src = (Lh, Lw) resized to the layer's."""
    hh, ww = dst
    lh, lw = (hh, ww) if absolute else (2 * hh - 1, 2 * ww - 1)
    old_h, old_w = d.uniform(dim, src[0]), d.uniform(dim, src[1])

    def resize(t, n):  # [d, L_s] as an image of height 1, width L_s, d channels -> [d, n]
        img = t[None, :, None, :]  # NCHW: [1, d, 1, L_s]
        return torch.nn.functional.interpolate(img, size=(1, n), **MODES[method])[0, :, 0, :]

    new_h, new_w = resize(old_h, lh), resize(old_w, lw)
    q = d.uniform(1, 2, hh, ww, dim)
    out = reference(q, new_h, new_w, hh, ww, absolute, False)
    config = {"input_shape": [2, hh, ww, dim]}
    if absolute:
        config["use_absolute_pos"] = True
    return Case({"input/query": q, "input/r_height": old_h, "input/r_width": old_w, "expected/r_height": new_h,
                 "expected/r_width": new_w, "expected/output": out.reshape(1, 2, hh, ww, -1)}, config,
                meta={"method": method})


@case("relative_positional_embedding", "resize_bilinear")
def resize_bilinear(d):
    return resize_case(d, "bilinear", 4, (7, 9), (6, 8), False)


@case("relative_positional_embedding", "resize_bilinear_down")
def resize_bilinear_down(d):
    return resize_case(d, "bilinear", 3, (13, 9), (3, 4), False)


@case("relative_positional_embedding", "resize_nearest_absolute")
def resize_nearest_absolute(d):
    return resize_case(d, "nearest", 5, (3, 4), (5, 7), True)
