"""Golden cases of mhsa_with_relative_position_embedding (BoTNet's MHSA, spec §5.8 with §4.10 and §2.1),
written with torch operators following the reference: the 1x1 qkv convolution split [E, E, O], the position
logits of RelativePositionalEmbedding with the reference's "rel_to_abs" reshape trick (the width part on the
query, the height part on the (W, H)-transposed query), added to q kᵀ·d^-0.5, softmax, P v, merged heads,
the output matmul."""

import torch
import torch.nn.functional as F

from common import Case, case


def rel_to_abs(x, p):
    """[..., n, 2P - 1] -> [..., n, P]: the reference's reshape trick."""
    *lead, n, _ = x.shape
    flat = x.reshape(*lead, n * (2 * p - 1))[..., n - 1:-1]  # drop the first n - 1 and the last element
    y = flat.reshape(*lead, n, 2 * p - 2)
    return y[..., p - n:2 * p - n]


def pos_logits(q, rh, rw, relative):
    """q [B, h, H, W, d] -> [B, h, H, W, H, W]."""
    hh, ww = q.shape[2], q.shape[3]
    lw = q @ rw  # [B, h, H, W, Lw]
    lh = q.transpose(2, 3) @ rh  # [B, h, W, H, Lh]
    if relative:
        lw = rel_to_abs(lw, ww)
        lh = rel_to_abs(lh, hh)
    lh = lh.transpose(2, 3)  # [B, h, H, W, H]
    return lh[..., :, None] + lw[..., None, :]


def botnet(x, w, cfg):
    b, hh, ww, c = x.shape
    h = cfg.get("num_heads", 4)
    d = cfg.get("key_dim", 0) or c // h
    out_weight = cfg.get("out_weight", True)
    o = (cfg.get("out_shape") or c) if out_weight else c
    e, dv, n = h * d, o // h, hh * ww
    t = F.conv2d(x.permute(0, 3, 1, 2), w["qkv_conv/kernel"].permute(3, 2, 0, 1)).permute(0, 2, 3, 1)
    q, k, v = t.reshape(b, n, 2 * e + o).split([e, e, o], dim=-1)
    q = q.reshape(b, n, h, d).transpose(1, 2)
    k = k.reshape(b, n, h, d).transpose(1, 2)
    v = v.reshape(b, n, h, dv).transpose(1, 2)
    pos = pos_logits(q.reshape(b, h, hh, ww, d), w["pos_emb/r_height"], w["pos_emb/r_width"],
                     cfg.get("relative", True)).reshape(b, h, n, n)
    p = torch.softmax((q @ k.transpose(-1, -2)) * d ** -0.5 + pos, dim=-1)
    y = (p @ v).transpose(1, 2).reshape(b, n, h * dv)
    if out_weight:
        y = y @ w["output/kernel"]
        if "output/bias" in w:
            y = y + w["output/bias"]
    return y.reshape(b, hh, ww, -1), p


def botnet_case(d, b, cfg, with_weights=True):
    hh, ww, c = cfg["input_shape"]
    h = cfg.get("num_heads", 4)
    kd = cfg.get("key_dim", 0) or c // h
    out_weight = cfg.get("out_weight", True)
    o = (cfg.get("out_shape") or c) if out_weight else c
    rel = cfg.get("relative", True)
    x = d.uniform(b, hh, ww, c)
    w = {"qkv_conv/kernel": d.uniform(1, 1, c, 2 * h * kd + o, scale=0.5),
         "pos_emb/r_height": d.uniform(kd, 2 * hh - 1 if rel else hh, scale=0.5),
         "pos_emb/r_width": d.uniform(kd, 2 * ww - 1 if rel else ww, scale=0.5)}
    if out_weight:
        w["output/kernel"] = d.uniform(h * (o // h), o, scale=0.5)
        if cfg.get("out_bias"):
            w["output/bias"] = d.uniform(o, scale=0.3)
    y, p = botnet(x, w, cfg)
    tensors = {"input/x": x, **{f"weights/{k}": v for k, v in w.items()}, "expected/output": y}
    if with_weights:
        tensors["expected/weights"] = p
    return Case(tensors, cfg)


@case("mhsa_with_relative_position_embedding", "defaults_7x9")
def defaults(d):
    return botnet_case(d, 2, {"input_shape": [7, 9, 16]}, with_weights=False)


@case("mhsa_with_relative_position_embedding", "key_dim_out_shape_bias_5x4")
def options(d):
    return botnet_case(d, 2, {"input_shape": [5, 4, 10], "num_heads": 3, "key_dim": 6, "out_shape": 12,
                              "out_bias": True})


@case("mhsa_with_relative_position_embedding", "absolute_no_out_weight_3x5")
def absolute(d):
    return botnet_case(d, 2, {"input_shape": [3, 5, 8], "num_heads": 2, "relative": False, "out_weight": False})
