"""Golden cases of multi_head_self_attention_channel (DaViT's channel attention, spec §5.11), written with
torch operators from the spec's formulas: the qkv matmul split into value, query, key thirds (this order),
Q [B, h, d, N], K [B, h, N, d], V [B, h, d, N], softmax(Q K · d^-0.5) over the key channels, A V, merged
heads, the output matmul."""

import torch

from common import Case, case


def channel_mhsa(x, w, cfg):
    b, c = x.shape[0], x.shape[-1]
    h = cfg.get("num_heads", 4)
    d = cfg.get("key_dim", 0) or c // h
    e = h * d
    t = x.reshape(b, -1, c) @ w["qkv/kernel"]
    if "qkv/bias" in w:
        t = t + w["qkv/bias"]
    n = t.shape[1]
    v, q, k = t.split([e, e, e], dim=-1)
    q = q.reshape(b, n, h, d).permute(0, 2, 3, 1)
    k = k.reshape(b, n, h, d).permute(0, 2, 1, 3)
    v = v.reshape(b, n, h, d).permute(0, 2, 3, 1)
    a = torch.softmax((q @ k) * d ** -0.5, dim=-1)
    y = (a @ v).permute(0, 3, 1, 2).reshape(b, n, e)
    if cfg.get("out_weight", True):
        y = y @ w["output/kernel"]
        if "output/bias" in w:
            y = y + w["output/bias"]
    return y.reshape(*x.shape[:-1], y.shape[-1]), a


def channel_case(d, b, hh, ww, cfg):
    c, h = cfg["channels"], cfg.get("num_heads", 4)
    e = h * (cfg.get("key_dim", 0) or c // h)
    o = cfg.get("out_shape") or c
    x = d.uniform(b, hh, ww, c)
    w = {"qkv/kernel": d.uniform(c, 3 * e, scale=0.5)}
    if cfg.get("qkv_bias"):
        w["qkv/bias"] = d.uniform(3 * e, scale=0.3)
    if cfg.get("out_weight", True):
        w["output/kernel"] = d.uniform(e, o, scale=0.5)
        if cfg.get("out_bias"):
            w["output/bias"] = d.uniform(o, scale=0.3)
    y, a = channel_mhsa(x, w, cfg)
    tensors = {"input/x": x, **{f"weights/{k}": v for k, v in w.items()}, "expected/output": y,
               "expected/weights": a}
    return Case(tensors, cfg)


@case("multi_head_self_attention_channel", "defaults_7x9")
def defaults(d):
    return channel_case(d, 2, 7, 9, {"channels": 16})


@case("multi_head_self_attention_channel", "key_dim_out_shape_biases_5x3")
def options(d):
    return channel_case(d, 3, 5, 3, {"channels": 10, "num_heads": 3, "key_dim": 5, "out_shape": 7,
                                     "qkv_bias": True, "out_bias": True})


@case("multi_head_self_attention_channel", "no_out_weight_4x6")
def no_out_weight(d):
    return channel_case(d, 2, 4, 6, {"channels": 12, "num_heads": 2, "key_dim": 4, "out_weight": False})
