"""Golden cases of multi_head_relative_positional_embedding (BEiT's MultiHeadRelativePositionalEmbedding,
spec §4.6): the KCAM index written from the spec's formula (class-token entries, the last Nk columns for
reduced keys), the gather and add with torch operators, and load_resized_weights against PyTorch's
interpolate (bilinear with align_corners=False; nearest-exact for TF2's nearest)."""

import math

import torch

from common import Case, case

MODES = {"bilinear": dict(mode="bilinear", align_corners=False), "nearest": dict(mode="nearest-exact")}


def kcam_index(h, w, cls, nk):
    """I [c + h·w, c + nk] as in the spec: a = p mod h, b = p div h; last nk patch columns; class entries."""
    n = h * w
    p = torch.arange(n)
    a, b = p % h, p // h
    idx = (a[:, None] - a[None, :] + h - 1) + (b[:, None] - b[None, :] + w - 1) * (2 * h - 1)
    idx = idx[:, n - nk:]
    if cls:
        r = (2 * h - 1) * (2 * w - 1) + 3
        top = torch.full((1, nk), r - 3, dtype=idx.dtype)
        left = torch.full((n + 1, 1), r - 2, dtype=idx.dtype)
        left[0, 0] = r - 1
        idx = torch.cat([left, torch.cat([top, idx], dim=0)], dim=1)
    return idx


def forward_case(d, heads, h, w, cls, nk, table_heads=None, attn_height=None):
    c = 1 if cls else 0
    nq = c + h * w
    r = (2 * h - 1) * (2 * w - 1) + 3 * c
    th = heads if table_heads is None else table_heads
    table = d.uniform(th, r)
    idx = kcam_index(h, w, cls, nk)
    bias = table[:, idx]  # [th, Nq, Nk]
    x = d.uniform(2, heads, nq, nk + c)
    config = {"input_shape": [heads, nq, nk + c], "with_cls_token": cls}
    if attn_height is not None:
        config["attn_height"] = attn_height
    if table_heads is not None:
        config["num_heads"] = table_heads
    return Case({"input/x": x, "weights/positional_embedding": table, "expected/index": idx.to(torch.float64),
                 "expected/bias": bias, "expected/output": x + bias[None]}, config)


@case("multi_head_relative_positional_embedding", "cls_4x4")
def cls_4x4(d):
    return forward_case(d, 3, 4, 4, True, 16)


@case("multi_head_relative_positional_embedding", "no_cls_2x3")
def no_cls_2x3(d):
    return forward_case(d, 2, 2, 3, False, 6, attn_height=2)


@case("multi_head_relative_positional_embedding", "cls_3x5")
def cls_3x5(d):
    return forward_case(d, 2, 3, 5, True, 15, attn_height=3)


@case("multi_head_relative_positional_embedding", "reduced_keys_4x4")
def reduced_keys_4x4(d):
    return forward_case(d, 2, 4, 4, False, 4)


@case("multi_head_relative_positional_embedding", "one_table_head")
def one_table_head(d):
    return forward_case(d, 4, 3, 3, True, 9, table_heads=1)


def resize_case(d, method, heads, src_side, h, w, cls, attn_height):
    cp = 3 if cls else 0
    source = d.uniform(heads, src_side * src_side + cp)
    r = (2 * h - 1) * (2 * w - 1) + cp
    if attn_height is None:
        th = tw = int(math.sqrt(r - cp))
    else:
        th = 2 * attn_height - 1
        tw = (r - cp) // th
    img = source[:, :src_side * src_side].reshape(1, heads, src_side, src_side)
    res = torch.nn.functional.interpolate(img, size=(th, tw), **MODES[method]).reshape(heads, th * tw)
    table = torch.cat([res, source[:, src_side * src_side:]], dim=1) if cls else res
    c = 1 if cls else 0
    nq = c + h * w
    idx = kcam_index(h, w, cls, h * w)
    x = d.uniform(2, heads, nq, nq)
    config = {"input_shape": [heads, nq, nq], "with_cls_token": cls}
    if attn_height is not None:
        config["attn_height"] = attn_height
    return Case({"input/x": x, "input/source": source, "expected/positional_embedding": table,
                 "expected/output": x + table[:, idx][None]}, config, meta={"method": method})


@case("multi_head_relative_positional_embedding", "resize_bilinear_cls")
def resize_bilinear_cls(d):
    return resize_case(d, "bilinear", 3, 7, 5, 5, True, None)


@case("multi_head_relative_positional_embedding", "resize_bilinear_rect")
def resize_bilinear_rect(d):
    return resize_case(d, "bilinear", 2, 5, 3, 4, False, 3)


@case("multi_head_relative_positional_embedding", "resize_nearest_down")
def resize_nearest_down(d):
    return resize_case(d, "nearest", 2, 9, 3, 3, True, None)
