"""Golden cases of mhsa_with_multi_head_relative_position_embedding (CoAtNet's MHSA, spec §5.7 with §4.6 and
§2.1), written with torch operators: the 1x1 qkv convolution split [E, E, E], the KCAM relative index written
from the spec's formula (a = p mod H, b = p div H; not the raster geometry when H != W), the table gathered
per head and added to q kᵀ·d^-0.5, softmax, P v, merged heads, the output matmul."""

import torch
import torch.nn.functional as F

from common import Case, case


def kcam_index(hh, ww):
    p = torch.arange(hh * ww)
    a, b = p % hh, p // hh
    return (a[:, None] - a[None, :] + hh - 1) + (b[:, None] - b[None, :] + ww - 1) * (2 * hh - 1)


def coatnet(x, w, cfg):
    b, hh, ww, c = x.shape
    h = cfg.get("num_heads", 4)
    d = cfg.get("key_dim", 0) or c // h
    e, n = h * d, hh * ww
    t = F.conv2d(x.permute(0, 3, 1, 2), w["qkv_conv/kernel"].permute(3, 2, 0, 1), w.get("qkv_conv/bias"))
    q, k, v = t.permute(0, 2, 3, 1).reshape(b, n, 3 * e).split([e, e, e], dim=-1)
    q, k, v = (z.reshape(b, n, h, d).transpose(1, 2) for z in (q, k, v))
    bias = w["pos_emb/positional_embedding"][:, kcam_index(hh, ww)]  # [h, N, N]
    p = torch.softmax((q @ k.transpose(-1, -2)) * d ** -0.5 + bias, dim=-1)
    y = (p @ v).transpose(1, 2).reshape(b, n, e)
    if cfg.get("out_weight", True):
        y = y @ w["output/kernel"]
        if "output/bias" in w:
            y = y + w["output/bias"]
    return y.reshape(b, hh, ww, -1), p


def coatnet_case(d, b, cfg, with_weights=True):
    hh, ww, c = cfg["input_shape"]
    h = cfg.get("num_heads", 4)
    e = h * (cfg.get("key_dim", 0) or c // h)
    o = cfg.get("out_shape") or c
    x = d.uniform(b, hh, ww, c)
    w = {"qkv_conv/kernel": d.uniform(1, 1, c, 3 * e, scale=0.5)}
    if cfg.get("qkv_bias"):
        w["qkv_conv/bias"] = d.uniform(3 * e, scale=0.3)
    w["pos_emb/positional_embedding"] = d.uniform(h, (2 * hh - 1) * (2 * ww - 1), scale=2.0)
    if cfg.get("out_weight", True):
        w["output/kernel"] = d.uniform(e, o, scale=0.5)
        if cfg.get("out_bias"):
            w["output/bias"] = d.uniform(o, scale=0.3)
    y, p = coatnet(x, w, cfg)
    tensors = {"input/x": x, **{f"weights/{k}": v for k, v in w.items()}, "expected/output": y}
    if with_weights:
        tensors["expected/weights"] = p
    return Case(tensors, cfg)


@case("mhsa_with_multi_head_relative_position_embedding", "defaults_7x9")
def defaults(d):
    return coatnet_case(d, 2, {"input_shape": [7, 9, 16]}, with_weights=False)


@case("mhsa_with_multi_head_relative_position_embedding", "key_dim_out_shape_biases_5x4")
def options(d):
    return coatnet_case(d, 2, {"input_shape": [5, 4, 10], "num_heads": 3, "key_dim": 6, "out_shape": 7,
                               "qkv_bias": True, "out_bias": True})


@case("mhsa_with_multi_head_relative_position_embedding", "no_out_weight_square_4x4")
def no_out_weight(d):
    return coatnet_case(d, 3, {"input_shape": [4, 4, 8], "num_heads": 2, "key_dim": 3, "out_weight": False})
