"""Golden cases of the vision operators (include/attn/ops/{conv,pool,norm,activation,...}.hpp).

Loaded by tools/make_golden.py; the helpers (case, Case, Draw) are tools/golden/common.py's. Every reference is
a torch.nn.functional operator on NCHW tensors, with channels-last permutes around it and explicit
padding (F.pad) where Keras's rules differ from torch's (TensorFlow "same" pads the extra row/column at
the bottom/right; ZeroPadding2D + valid pooling counts the zeros; tf-same pooling does not).

Files: tests/data/ops_<op>/<name>_<f32|f64>.safetensors with "input/x", "input/kernel", "input/bias",
"expected/y" and the op's options in the "config" metadata.
"""

import torch
import torch.nn.functional as F

import common as g


def axis_pads(n, k, s, r, mode):
    """(before, after) of one axis, as include/attn/ops/padding.hpp."""
    e = r * (k - 1) + 1
    if mode == "valid":
        return 0, 0
    if mode == "same":
        out = -(-n // s)
        total = max((out - 1) * s + e - n, 0)
        return total // 2, total - total // 2
    if mode == "torch_same":
        return k // 2, k // 2
    raise ValueError(mode)


def pads_of(h, w, kh, kw, strides, dilation, padding):
    """(top, bottom, left, right)."""
    if isinstance(padding, list):
        return tuple(padding)
    t, b = axis_pads(h, kh, strides[0], dilation[0], padding)
    l, r = axis_pads(w, kw, strides[1], dilation[1], padding)
    return t, b, l, r


def rd(d, t):
    """A derived input rounded to the case's dtype (so the stored input is the one the reference saw)."""
    return t.to(d.dtype).to(torch.float64)


def nchw(x):
    return x.permute(0, 3, 1, 2)


def nhwc(x):
    return x.permute(0, 2, 3, 1)


# ---- conv2d -----------------------------------------------------------------------------------------


def conv_case(d, shape, kernel, cout, strides=(1, 1), dilation=(1, 1), groups=1, padding="valid", bias=True,
              depthwise=False):
    """conv2d (Keras kernel [kh, kw, C_in/groups, C_out]) or depthwise_conv2d (kernel [kh, kw, C, mult],
    then cout is the multiplier)."""
    b, h, w, c = shape
    kh, kw = kernel
    x = d.uniform(*shape)
    if depthwise:
        k = d.uniform(kh, kw, c, cout, scale=0.5)
        wt = k.reshape(kh, kw, 1, c * cout).permute(3, 2, 0, 1)  # [C·mult, 1, kh, kw]
        co, grp = c * cout, c
    else:
        k = d.uniform(kh, kw, c // groups, cout, scale=0.5)
        wt = k.permute(3, 2, 0, 1)  # [C_out, C_in/groups, kh, kw]
        co, grp = cout, groups
    bv = d.uniform(co, scale=0.5) if bias else None
    t, bt, l, r = pads_of(h, w, kh, kw, strides, dilation, padding)
    y = F.conv2d(F.pad(nchw(x), (l, r, t, bt)), wt, bv, stride=tuple(strides), dilation=tuple(dilation), groups=grp)
    tensors = {"input/x": x, "input/kernel": k}
    if bias:
        tensors["input/bias"] = bv
    tensors["expected/y"] = nhwc(y)
    cfg = {"strides": list(strides), "dilation_rate": list(dilation), "groups": groups, "padding": padding,
           "depthwise": depthwise, "pads": [t, bt, l, r]}
    # float32 sums of K = kh·kw·C_in/groups products: the absolute error grows like sqrt(K)
    taps = kh * kw * (1 if depthwise else c // groups)
    return g.Case(tensors, cfg, tolerances={"f32": (1e-5, 1e-6 * max(1.0, taps ** 0.5))})


@g.case("ops_conv2d", "k3_s1_valid_bias")
def _c1(d):
    return conv_case(d, (2, 7, 9, 5), (3, 3), 6)


@g.case("ops_conv2d", "k3_s2_same_asym")
def _c2(d):
    return conv_case(d, (2, 8, 7, 4), (3, 3), 5, strides=(2, 2), padding="same")


@g.case("ops_conv2d", "k4_torch_same_even")
def _c3(d):
    return conv_case(d, (1, 6, 5, 3), (4, 4), 4, padding="torch_same", bias=False)


@g.case("ops_conv2d", "k2x4_s2_same_even")
def _c4(d):
    return conv_case(d, (2, 7, 10, 3), (2, 4), 5, strides=(2, 2), padding="same")


@g.case("ops_conv2d", "k3_d2_same")
def _c5(d):
    return conv_case(d, (1, 9, 8, 4), (3, 3), 3, dilation=(2, 2), padding="same")


@g.case("ops_conv2d", "k3_d2_torch_same_shrinks")
def _c6(d):
    return conv_case(d, (1, 7, 9, 2), (3, 3), 3, dilation=(2, 2), padding="torch_same")


@g.case("ops_conv2d", "k2x3_s3x2_explicit")
def _c7(d):
    return conv_case(d, (2, 8, 9, 3), (2, 3), 4, strides=(3, 2), padding=[1, 0, 2, 1])


@g.case("ops_conv2d", "k3_groups2_same")
def _c8(d):
    return conv_case(d, (2, 6, 7, 6), (3, 3), 4, groups=2, padding="same")


@g.case("ops_conv2d", "k3_groups3_s2_d2_torch")
def _c9(d):
    return conv_case(d, (1, 11, 10, 9), (3, 3), 6, strides=(2, 1), dilation=(1, 2), groups=3,
                     padding="torch_same")


@g.case("ops_conv2d", "k1_s1_valid_pointwise")
def _c10(d):
    return conv_case(d, (2, 5, 6, 7), (1, 1), 9)


@g.case("ops_conv2d", "k1_s2_valid")
def _c11(d):
    return conv_case(d, (2, 5, 6, 7), (1, 1), 3, strides=(2, 2), bias=False)


@g.case("ops_conv2d", "k5_s3_wide_channels")
def _c12(d):
    return conv_case(d, (1, 13, 12, 17), (5, 5), 13, strides=(3, 3), padding="same")


@g.case("ops_conv2d", "groups_eq_channels_is_depthwise")
def _c13(d):
    return conv_case(d, (2, 6, 5, 4), (3, 3), 8, groups=4, padding="same")


@g.case("ops_conv2d", "dw_k7_same_mult1")
def _d1(d):
    return conv_case(d, (2, 9, 8, 37), (7, 7), 1, padding="same", depthwise=True)


@g.case("ops_conv2d", "dw_k3_s2_torch_mult2")
def _d2(d):
    return conv_case(d, (1, 8, 7, 5), (3, 3), 2, strides=(2, 2), padding="torch_same", depthwise=True)


@g.case("ops_conv2d", "dw_k4_s3_d2_explicit_nobias")
def _d3(d):
    return conv_case(d, (2, 12, 11, 20), (4, 3), 1, strides=(3, 2), dilation=(2, 1), padding=[2, 1, 0, 3],
                     bias=False, depthwise=True)


@g.case("ops_conv2d", "dw_k3_valid_mult3")
def _d4(d):
    return conv_case(d, (1, 5, 6, 3), (3, 3), 3, depthwise=True)


# ---- pooling ----------------------------------------------------------------------------------------


def pool_case(d, shape, pool, strides, padding, kind, count_pad=None):
    """avg/max pooling with Keras's padding rule: "same" excludes padded cells, explicit pads (ZeroPadding2D
    + valid) and torch_same count zeros. `count_pad` overrides."""
    b, h, w, c = shape
    x = d.uniform(*shape)
    t, bt, l, r = pads_of(h, w, pool[0], pool[1], strides, (1, 1), padding)
    counted = (padding != "same") if count_pad is None else count_pad
    xn = nchw(x)
    if kind == "avg":
        if counted:
            y = F.avg_pool2d(F.pad(xn, (l, r, t, bt)), pool, strides)
        else:
            sums = F.avg_pool2d(F.pad(xn, (l, r, t, bt)), pool, strides, divisor_override=1)
            ones = F.pad(torch.ones(1, 1, h, w, dtype=x.dtype), (l, r, t, bt))
            counts = F.avg_pool2d(ones, pool, strides, divisor_override=1)
            y = sums / counts
    else:
        fill = 0.0 if counted else float("-inf")
        y = F.max_pool2d(F.pad(xn, (l, r, t, bt), value=fill), pool, strides)
    cfg = {"kind": kind, "pool_size": list(pool), "strides": list(strides), "padding": padding,
           "count_pad": count_pad}
    return g.Case({"input/x": x, "expected/y": nhwc(y)}, cfg)


@g.case("ops_pool2d", "avg_k3_s2_same_excludes_pad")
def _p1(d):
    return pool_case(d, (2, 7, 8, 5), (3, 3), (2, 2), "same", "avg")


@g.case("ops_pool2d", "avg_k2_s2_same_odd")
def _p2(d):
    return pool_case(d, (1, 5, 7, 3), (2, 2), (2, 2), "same", "avg")


@g.case("ops_pool2d", "avg_k3_s1_zero_padding_counts")
def _p3(d):
    return pool_case(d, (2, 6, 5, 4), (3, 3), (1, 1), [1, 1, 1, 1], "avg")


@g.case("ops_pool2d", "avg_k3_s2_torch_same_counts")
def _p4(d):
    return pool_case(d, (1, 7, 6, 3), (3, 3), (2, 2), "torch_same", "avg")


@g.case("ops_pool2d", "avg_k2x3_s3x1_valid")
def _p5(d):
    return pool_case(d, (2, 8, 7, 3), (2, 3), (3, 1), "valid", "avg")


@g.case("ops_pool2d", "avg_k3_explicit_excluding")
def _p6(d):
    return pool_case(d, (1, 6, 6, 2), (3, 3), (2, 2), [1, 2, 0, 1], "avg", count_pad=False)


@g.case("ops_pool2d", "max_k3_s2_same")
def _p7(d):
    return pool_case(d, (2, 7, 8, 5), (3, 3), (2, 2), "same", "max")


@g.case("ops_pool2d", "max_k3_s1_zero_padding")
def _p8(d):
    return pool_case(d, (1, 5, 6, 4), (3, 3), (1, 1), [1, 1, 2, 0], "max")


@g.case("ops_pool2d", "max_k2_s3_valid")
def _p9(d):
    return pool_case(d, (2, 9, 10, 3), (2, 2), (3, 3), "valid", "max")


@g.case("ops_pool2d", "global_avg_max")
def _p10(d):
    x = d.uniform(3, 5, 7, 6)
    return g.Case({"input/x": x, "expected/avg": x.mean(dim=(1, 2)), "expected/max": x.amax(dim=(1, 2))},
                  {"kind": "global"})


# ---- normalisation ----------------------------------------------------------------------------------


@g.case("ops_norm", "layer_norm_eps1e-3")
def _n1(d):
    x = rd(d, d.uniform(2, 5, 7, 12, scale=2.0) + 0.5)
    gamma, beta = d.uniform(12), d.uniform(12)
    y = F.layer_norm(x, (12,), gamma, beta, eps=1e-3)
    return g.Case({"input/x": x, "input/gamma": gamma, "input/beta": beta, "expected/y": y},
                  {"op": "layer_norm", "epsilon": 1e-3})


@g.case("ops_norm", "layer_norm_no_center_eps1e-5")
def _n2(d):
    x = d.uniform(3, 10, 33)
    gamma = d.uniform(33)
    y = F.layer_norm(x, (33,), gamma, None, eps=1e-5)
    return g.Case({"input/x": x, "input/gamma": gamma, "expected/y": y}, {"op": "layer_norm", "epsilon": 1e-5})


@g.case("ops_norm", "batch_norm_eps1e-3")
def _n3(d):
    x = d.uniform(2, 4, 5, 9)
    gamma, beta, mean = d.uniform(9), d.uniform(9), d.uniform(9)
    var = rd(d, d.uniform(9).abs() + 0.05)
    y = nhwc(F.batch_norm(nchw(x), mean, var, gamma, beta, training=False, eps=1e-3))
    return g.Case({"input/x": x, "input/gamma": gamma, "input/beta": beta, "input/moving_mean": mean,
                   "input/moving_variance": var, "expected/y": y}, {"op": "batch_norm", "epsilon": 1e-3})


@g.case("ops_norm", "batch_norm_eps1e-5")
def _n4(d):
    x = d.uniform(1, 3, 6, 16)
    gamma, beta, mean = d.uniform(16), d.uniform(16), d.uniform(16)
    var = rd(d, d.uniform(16).abs() * 0.01 + 1e-4)  # small variances: eps matters
    y = nhwc(F.batch_norm(nchw(x), mean, var, gamma, beta, training=False, eps=1e-5))
    return g.Case({"input/x": x, "input/gamma": gamma, "input/beta": beta, "input/moving_mean": mean,
                   "input/moving_variance": var, "expected/y": y}, {"op": "batch_norm", "epsilon": 1e-5})


@g.case("ops_norm", "group_norm_g4")
def _n5(d):
    x = rd(d, d.uniform(2, 5, 6, 12) + 0.3)
    gamma, beta = d.uniform(12), d.uniform(12)
    y = nhwc(F.group_norm(nchw(x), 4, gamma, beta, eps=1e-5))
    return g.Case({"input/x": x, "input/gamma": gamma, "input/beta": beta, "expected/y": y},
                  {"op": "group_norm", "groups": 4, "epsilon": 1e-5})


@g.case("ops_norm", "group_norm_g1_eps1e-3")
def _n6(d):
    x = d.uniform(3, 4, 3, 5)
    gamma, beta = d.uniform(5), d.uniform(5)
    y = nhwc(F.group_norm(nchw(x), 1, gamma, beta, eps=1e-3))
    return g.Case({"input/x": x, "input/gamma": gamma, "input/beta": beta, "expected/y": y},
                  {"op": "group_norm", "groups": 1, "epsilon": 1e-3})


@g.case("ops_norm", "l2_normalize")
def _n7(d):
    x = d.uniform(4, 6, 10)
    x[0, 0] = 0.0
    x[1, 2] = rd(d, x[1, 2] * 1e-7)  # squared norm below eps: TF divides by sqrt(eps)
    eps = 1e-12
    sq = (x * x).sum(dim=-1, keepdim=True)
    y = x / torch.sqrt(torch.clamp(sq, min=eps))
    return g.Case({"input/x": x, "expected/y": y}, {"op": "l2_normalize", "epsilon": eps})


# ---- activations ------------------------------------------------------------------------------------


def gelu_linear(x):
    e = 0.5 - 0.1444 * torch.relu(1.769 - 0.7071 * x.abs()) ** 2
    return x * (torch.sign(x) * e + 0.5)


ACTIVATIONS = {
    "hard_swish": F.hardswish,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.3),
    "mish": F.mish,
    "phish": lambda x: x * torch.tanh(F.gelu(x)),
    "gelu/app": lambda x: F.gelu(x, approximate="tanh"),
    "gelu/linear": gelu_linear,
    "gelu/quick": lambda x: x * torch.sigmoid(1.702 * x),
    "leaky_relu/0.01": lambda x: F.leaky_relu(x, 0.01),
    "hard_sigmoid_torch": F.hardsigmoid,
    "squared_relu": lambda x: torch.relu(x) ** 2,
    "relu": torch.relu,
    "relu6": F.relu6,
    "gelu": F.gelu,
    "swish": F.silu,
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda x: torch.softmax(x, dim=-1),
    "softplus": lambda x: F.softplus(x, threshold=1000),
    "elu": F.elu,
    "selu": F.selu,
    "linear": lambda x: x,
    "hard_sigmoid": lambda x: torch.clamp(0.2 * x + 0.5, 0, 1),
}


@g.case("ops_activation", "by_name")
def _a1(d):
    x = d.uniform(3, 2, 12, scale=6.0)
    grid = torch.tensor([-5, -3, -1, -0.5, 0, 0.5, 1, 3, 5], dtype=torch.float64)
    x.view(-1)[:9] = grid
    alpha = d.uniform(12, scale=0.5)
    gain, bias = d.uniform(1)[0], d.uniform(1)[0]
    t = {"input/x": x, "input/prelu_alpha": alpha, "input/star_relu_gain": gain.reshape(1),
         "input/star_relu_bias": bias.reshape(1)}
    for name, fn in ACTIVATIONS.items():
        t["expected/" + name] = fn(x)
    t["expected/prelu"] = torch.where(x >= 0, x, alpha * x)
    t["expected/star_relu"] = gain * torch.relu(x) ** 2 + bias
    return g.Case(t, {"names": list(ACTIVATIONS) + ["prelu", "star_relu"]})


# ---- windows ----------------------------------------------------------------------------------------


def block_windows(x, wh, ww):
    b, h, w, c = x.shape
    return x.reshape(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, wh, ww, c)


def grid_windows(x, wh, ww):
    b, h, w, c = x.shape
    return x.reshape(b, wh, h // wh, ww, w // ww, c).permute(0, 2, 4, 1, 3, 5).reshape(-1, wh, ww, c)


def swin_mask(hp, wp, wh, ww, sh, sw):
    """The official Swin construction: label slices, partition, compare."""
    img = torch.zeros(1, hp, wp, 1, dtype=torch.float64)
    cnt = 0
    for hs in (slice(0, hp - wh), slice(hp - wh, hp - sh), slice(hp - sh, hp)):
        for ws in (slice(0, wp - ww), slice(wp - ww, wp - sw), slice(wp - sw, wp)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    mw = block_windows(img, wh, ww).reshape(-1, wh * ww)
    diff = mw[:, None, :] - mw[:, :, None]
    return torch.where(diff != 0, torch.full_like(diff, -100.0), torch.zeros_like(diff))


@g.case("ops_window", "pad_partition_shift_mask")
def _w1(d):
    x = d.uniform(2, 5, 7, 3)
    ws = 3
    wh, ww = min(ws, 5), min(ws, 7)
    ph, pw = -(-5 // wh), -(-7 // ww)
    padded = F.pad(x, (0, 0, 0, pw * ww - 7, 0, ph * wh - 5))
    sh = sw = int(wh * 0.5)
    shifted = torch.roll(padded, shifts=(-sh, -sw), dims=(1, 2))
    t = {"input/x": x, "expected/padded": padded, "expected/windows": block_windows(padded, wh, ww),
         "expected/grid_windows": grid_windows(padded, wh, ww), "expected/shifted": shifted,
         "expected/mask": swin_mask(ph * wh, pw * ww, wh, ww, sh, sw)}
    return g.Case(t, {"window_size": ws, "shift": sh})


@g.case("ops_window", "rect_window_mask")
def _w2(d):
    x = d.uniform(1, 8, 12, 2)
    wh, ww, sh, sw = 4, 3, 2, 1
    t = {"input/x": x, "expected/windows": block_windows(x, wh, ww), "expected/grid_windows": grid_windows(x, wh, ww),
         "expected/shifted": torch.roll(x, shifts=(-sh, -sw), dims=(1, 2)),
         "expected/mask": swin_mask(8, 12, wh, ww, sh, sw)}
    return g.Case(t, {"window_size": [wh, ww], "shift": [sh, sw]})


# ---- resize -----------------------------------------------------------------------------------------


@g.case("ops_resize", "bilinear_and_nearest")
def _r1(d):
    x = d.uniform(2, 5, 7, 3)
    t = {"input/x": x}
    sizes = [(8, 4), (3, 10), (5, 7), (1, 1), (11, 13)]
    for h, w in sizes:
        t[f"expected/bilinear_{h}x{w}"] = nhwc(F.interpolate(nchw(x), size=(h, w), mode="bilinear",
                                                             align_corners=False, antialias=False))
        t[f"expected/nearest_{h}x{w}"] = nhwc(F.interpolate(nchw(x), size=(h, w), mode="nearest-exact"))
    return g.Case(t, {"sizes": [list(s) for s in sizes]})


# ---- patches ----------------------------------------------------------------------------------------


def unfold_nhwc(x, k, s, rates, same):
    b, h, w, c = x.shape
    p = k // 2 if same else 0
    u = F.unfold(nchw(x), k, dilation=tuple(rates), padding=p, stride=s)  # [B, C·k·k, L], order (c, a, b)
    hp, wp = h + 2 * p, w + 2 * p
    ho = (hp - rates[0] * (k - 1) - 1) // s + 1
    wo = (wp - rates[1] * (k - 1) - 1) // s + 1
    return u.reshape(b, c, k, k, ho, wo).permute(0, 4, 5, 2, 3, 1).reshape(b, ho, wo, k * k * c)


@g.case("ops_patches", "extract")
def _e1(d):
    x = d.uniform(2, 7, 8, 3)
    cases = [(3, 2, (1, 1), True), (3, 1, (2, 2), True), (2, 2, (1, 1), False), (3, 2, (2, 1), False),
             (4, 3, (1, 2), True)]
    t = {"input/x": x}
    for k, s, r, same in cases:
        t[f"expected/k{k}_s{s}_r{r[0]}x{r[1]}_{'same' if same else 'valid'}"] = unfold_nhwc(x, k, s, r, same)
    return g.Case(t, {"cases": [[k, s, list(r), same] for k, s, r, same in cases]})


def fold_nhwc(p, k, s, r, pad, out):
    b, hh, ww, kkc = p.shape
    c = kkc // (k * k)
    cols = p.reshape(b, hh * ww, k, k, c).permute(0, 4, 2, 3, 1).reshape(b, c * k * k, hh * ww)
    return nhwc(F.fold(cols, out, k, dilation=r, padding=pad, stride=s))


@g.case("ops_patches", "fold")
def _f1(d):
    t = {}
    cases = []
    for name, (hh, ww, k, s, r, pad, out) in {
        "k3_s2_pad1_auto": (4, 4, 3, 2, 1, 1, None),
        "k2_s2_pad1_7x7": (4, 4, 2, 2, 1, 1, (7, 7)),
        "k3_s1_pad1_beyond_keras": (5, 6, 3, 1, 1, 1, (5, 6)),
        "k3_s3_r2_nopad": (3, 2, 3, 3, 2, 0, None),
    }.items():
        p = d.uniform(2, hh, ww, k * k * 2)
        ch, cw = (hh - 1) * s + r * (k - 1) + 1 + pad, (ww - 1) * s + r * (k - 1) + 1 + pad
        size = out if out is not None else (ch - 2 * pad, cw - 2 * pad)
        t[f"input/{name}"] = p
        t[f"expected/{name}"] = fold_nhwc(p, k, s, r, pad, size)
        cases.append([name, k, s, r, pad, -1 if out is None else out[0], -1 if out is None else out[1]])
    return g.Case(t, {"cases": cases})


# ---- relative positions -----------------------------------------------------------------------------


@g.case("ops_relpos", "raster_gather")
def _rp1(d):
    """Swin's construction (meshgrid, pairwise differences) and a gather into [heads, N, N]."""
    h, w, heads = 3, 4, 2
    coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)  # [2, N]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # query - key
    index = (rel[..., 0] + h - 1) * (2 * w - 1) + (rel[..., 1] + w - 1)
    r = (2 * h - 1) * (2 * w - 1)
    table = d.uniform(r, heads)  # Swin layout [R, heads]
    bias = table[index.flatten()].reshape(h * w, h * w, heads).permute(2, 0, 1)
    return g.Case({"input/table": table, "expected/index": index.to(torch.float64), "expected/bias": bias},
                  {"height": h, "width": w, "heads": heads})


# ---- DFT --------------------------------------------------------------------------------------------


@g.case("ops_dft", "rows_and_fnet_mix")
def _f2(d):
    x = d.uniform(2, 12, 10)
    rows = d.uniform(5, 15)
    spec = torch.fft.fft(rows, dim=-1)
    return g.Case({"input/x": x, "input/rows": rows, "expected/mix": torch.fft.fft2(x, dim=(-2, -1)).real,
                   "expected/re": spec.real, "expected/im": spec.imag}, {})


@g.case("ops_conv2d", "dw_k3_same_wide_rows")
def _d5(d):
    # wide rows and 40 channels: the 4-output interior blocks of the AVX kernels run (2 registers of
    # channels, then the per-output tail)
    return conv_case(d, (2, 6, 13, 40), (3, 3), 1, padding="same", depthwise=True)


@g.case("ops_conv2d", "dw_k5_s2_valid_wide_rows")
def _d6(d):
    return conv_case(d, (1, 9, 21, 48), (5, 5), 1, strides=(2, 2), depthwise=True)


@g.case("ops_conv2d", "k3_same_c68_channel_blocks")
def _c14(d):
    # 68 output channels and K = 3·3·30 = 270 im2col columns: the implicit-GEMM kernels run full blocks
    # of output channels read in place and a short packed block, and cut K into several chunks, at every
    # SIMD level
    return conv_case(d, (2, 6, 7, 30), (3, 3), 68, padding="same")


@g.case("ops_conv2d", "k3_groups2_s2_c72_channel_blocks")
def _c15(d):
    return conv_case(d, (1, 9, 8, 16), (3, 3), 72, strides=(2, 1), groups=2, padding="torch_same")


@g.case("ops_conv2d", "dw_k5_same_rows19")
def _d7(d):
    # rows of 19 outputs at stride 1: the AVX kernels run blocks of 8 or 16 outputs that share their input
    # columns, with the padding inside a block and a last block overlapping the one before it
    return conv_case(d, (1, 5, 19, 20), (5, 5), 1, padding="same", depthwise=True)


@g.case("ops_conv2d", "dw_k3_valid_rows16_mult2")
def _d8(d):
    return conv_case(d, (2, 4, 18, 12), (3, 3), 2, depthwise=True)
