"""Golden cases of the mobile_mqa layer: torch linear layers, the stride-2 depthwise 3x3 downsampling as
conv2d with groups (Keras 'same' padding spelled out with F.pad, so odd sizes give ceil(L/2) keys: the
intended behaviour where the reference crashes), one key/value head shared by every query head,
softmax(Q Kᵀ/√d) V, the output projection and the gated residual x + λ·y."""

import math

import torch
import torch.nn.functional as F

from common import Case, case, linear, merge_heads


def same_pads(n, k=3, s=2):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def mobile_mqa(x, w, heads, downsampling):
    b, h, wd, c = x.shape
    d = c // heads
    q = linear(x, w["q_proj/kernel"], w["q_proj/bias"]).reshape(b, h * wd, heads, d).transpose(1, 2)
    kv = linear(x, w["kv_proj/kernel"], w["kv_proj/bias"])  # [B, H, W, 2d]
    if downsampling:
        top, bottom = same_pads(h)
        left, right = same_pads(wd)
        z = F.pad(kv.permute(0, 3, 1, 2), (left, right, top, bottom))
        kv = F.conv2d(z, w["downsample/kernel"].permute(2, 3, 0, 1), w["downsample/bias"], stride=2, groups=2 * d)
        kv = kv.permute(0, 2, 3, 1)
    kv = kv.reshape(b, 1, -1, 2 * d)
    k, v = kv[..., :d], kv[..., d:]
    p = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(d), dim=-1)  # K/V broadcast over heads
    o = merge_heads(p @ v).reshape(b, h, wd, c)
    return x + w["lambda"] * linear(o, w["o_proj/kernel"], w["o_proj/bias"]), p


def mqa_case(d, b, h, wd, dim, heads, downsampling):
    hd = dim // heads
    x = d.uniform(b, h, wd, dim)
    w = {"lambda": 0.5 + d.uniform(1, scale=0.3).reshape(()),
         "q_proj/kernel": d.uniform(dim, dim, scale=0.5), "q_proj/bias": d.uniform(dim, scale=0.2),
         "kv_proj/kernel": d.uniform(dim, 2 * hd, scale=0.5), "kv_proj/bias": d.uniform(2 * hd, scale=0.2),
         "o_proj/kernel": d.uniform(dim, dim, scale=0.5), "o_proj/bias": d.uniform(dim, scale=0.2)}
    if downsampling:
        w["downsample/kernel"] = d.uniform(3, 3, 2 * hd, 1, scale=0.5)
        w["downsample/bias"] = d.uniform(2 * hd, scale=0.2)
    y, p = mobile_mqa(x, w, heads, downsampling)
    tensors = {"input/x": x, **{f"weights/{k}": v for k, v in w.items()}, "expected/output": y,
               "expected/weights": p}
    return Case(tensors, {"dim": dim, "num_heads": heads, "use_downsampling": downsampling})


@case("mobile_mqa", "downsampling_odd_7x9_b3")
def odd(d):
    return mqa_case(d, b=3, h=7, wd=9, dim=12, heads=3, downsampling=True)


@case("mobile_mqa", "downsampling_even_8x6")
def even(d):
    return mqa_case(d, b=2, h=8, wd=6, dim=8, heads=2, downsampling=True)


@case("mobile_mqa", "no_downsampling_5x5_heads4")
def plain(d):
    return mqa_case(d, b=2, h=5, wd=5, dim=16, heads=4, downsampling=False)
