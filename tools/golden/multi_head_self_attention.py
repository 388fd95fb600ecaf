"""Golden cases of multi_head_self_attention (UniFormer's MHSA, spec §5.10 with §2.1), written with torch
operators from the spec's formulas: a fused qkv matmul split [E, E, O] (block layout, each head-major),
softmax(q kᵀ·d^-0.5 + pos_emb) v per head, merged heads, the output matmul."""

import torch

from common import Case, case


def mhsa(x, w, cfg, pos=None):
    b, c = x.shape[0], x.shape[-1]
    h = cfg.get("num_heads", 4)
    d = cfg.get("key_dim", 0) or c // h
    out_weight = cfg.get("out_weight", True)
    o = (cfg.get("out_shape") or c) if out_weight else c
    e, dv = h * d, o // h
    t = x.reshape(b, -1, c) @ w["qkv/kernel"]
    if "qkv/bias" in w:
        t = t + w["qkv/bias"]
    n = t.shape[1]
    q, k, v = t.split([e, e, o], dim=-1)
    q = q.reshape(b, n, h, d).transpose(1, 2)
    k = k.reshape(b, n, h, d).transpose(1, 2)
    v = v.reshape(b, n, h, dv).transpose(1, 2)
    s = (q @ k.transpose(-1, -2)) * d ** -0.5
    if pos is not None:
        s = s + pos
    p = torch.softmax(s, dim=-1)
    y = (p @ v).transpose(1, 2).reshape(b, n, h * dv)
    if out_weight:
        y = y @ w["output/kernel"]
        if "output/bias" in w:
            y = y + w["output/bias"]
    return y.reshape(*x.shape[:-1], y.shape[-1]), p


def mhsa_case(d, b, hh, ww, cfg, pos_heads=None, with_weights=True):
    c, h = cfg["channels"], cfg.get("num_heads", 4)
    kd = cfg.get("key_dim", 0) or c // h
    out_weight = cfg.get("out_weight", True)
    o = (cfg.get("out_shape") or c) if out_weight else c
    x = d.uniform(b, hh, ww, c)
    w = {"qkv/kernel": d.uniform(c, 2 * h * kd + o, scale=0.5)}
    if cfg.get("qkv_bias"):
        w["qkv/bias"] = d.uniform(2 * h * kd + o, scale=0.3)
    if out_weight:
        w["output/kernel"] = d.uniform(h * (o // h), o, scale=0.5)
        if cfg.get("out_bias"):
            w["output/bias"] = d.uniform(o, scale=0.3)
    tensors = {"input/x": x}
    pos = None
    if pos_heads is not None:
        pos = d.uniform(pos_heads, hh * ww, hh * ww, scale=2.0)
        tensors["input/pos_emb"] = pos
    y, p = mhsa(x, w, cfg, pos)
    tensors.update({f"weights/{k}": v for k, v in w.items()})
    tensors["expected/output"] = y
    if with_weights:
        tensors["expected/weights"] = p
    return Case(tensors, cfg)


@case("multi_head_self_attention", "defaults_7x9")
def defaults(d):
    return mhsa_case(d, 2, 7, 9, {"channels": 16}, with_weights=False)


@case("multi_head_self_attention", "key_dim_out_shape_biases_pos_emb_5x7")
def options(d):
    return mhsa_case(d, 2, 5, 7, {"channels": 10, "num_heads": 3, "key_dim": 6, "out_shape": 12,
                                  "qkv_bias": True, "out_bias": True}, pos_heads=3)


@case("multi_head_self_attention", "no_out_weight_shared_pos_emb_3x4")
def no_out_weight(d):
    return mhsa_case(d, 3, 3, 4, {"channels": 8, "num_heads": 2, "out_weight": False}, pos_heads=1)
