"""Golden cases of mhsa_with_multi_head_position (LeViT's attention, spec §5.5 with §4.4 and §2.1), written
with torch operators: the qkv matmul, batch_norm in eval mode (eps 1e-5), the per-head interleaved
q | k | v split, the MultiHeadPositionalEmbedding index written from the spec's formula (query height H,
stride 1, key height H) gathering the [N, h] table, softmax(q kᵀ·d^-0.5 + bias) v, merged heads, hard_swish,
the output matmul and its (zero-gamma) batch_norm."""

import torch
import torch.nn.functional as F

from common import Case, case


def levit_index(qh, nq, kh, nk, s):
    p = torch.arange(nq)[:, None]
    m = torch.arange(nk)[None, :]
    return (m % kh - s * (p % qh)).abs() + kh * (m // kh - s * (p // qh)).abs()


def bn(x, w, prefix):
    return F.batch_norm(x.reshape(-1, x.shape[-1]), w[f"{prefix}/moving_mean"], w[f"{prefix}/moving_variance"],
                        w[f"{prefix}/gamma"], w[f"{prefix}/beta"], training=False, eps=1e-5).reshape(x.shape)


def hard_swish(x):
    return x * F.relu6(x + 3) / 6


def levit(x, w, cfg):
    hh, ww, c = cfg["input_shape"]
    h, r = cfg["num_heads"], cfg.get("attn_ratio", 1)
    d = cfg.get("key_dim", -1)
    d = d if d > 0 else c // h
    b, n = x.shape[0], hh * ww
    t = x.reshape(b, n, c) @ w["qkv/kernel"]
    if "qkv/bias" in w:
        t = t + w["qkv/bias"]
    if cfg.get("use_bn"):
        t = bn(t, w, "qkv_bn")
    q, k, v = t.reshape(b, n, h, (r + 2) * d).split([d, d, r * d], dim=-1)
    q, k, v = (z.transpose(1, 2) for z in (q, k, v))
    bias = w["attn_pos/positional_embedding"][levit_index(hh, n, hh, n, 1)].permute(2, 0, 1)
    p = torch.softmax((q @ k.transpose(-1, -2)) * d ** -0.5 + bias, dim=-1)
    y = (p @ v).transpose(1, 2).reshape(b, n, r * h * d)
    if cfg.get("activation") == "hard_swish":
        y = hard_swish(y)
    y = y @ w["out/kernel"]
    if "out/bias" in w:
        y = y + w["out/bias"]
    if cfg.get("use_bn"):
        y = bn(y, w, "out_bn")
    return y.reshape(*x.shape[:-1], y.shape[-1]), p


def bn_weights(d, prefix, ch):
    return {f"{prefix}/gamma": 1 + d.uniform(ch, scale=0.3), f"{prefix}/beta": d.uniform(ch, scale=0.3),
            f"{prefix}/moving_mean": d.uniform(ch, scale=0.3),
            f"{prefix}/moving_variance": 1 + d.uniform(ch, scale=0.5).abs()}


def levit_case(d, b, cfg, tokens=False, with_weights=True):
    hh, ww, c = cfg["input_shape"]
    h, r = cfg["num_heads"], cfg.get("attn_ratio", 1)
    kd = cfg.get("key_dim", -1)
    kd = kd if kd > 0 else c // h
    o = cfg.get("output_dim", -1)
    o = o if o > 0 else c
    x = d.uniform(b, hh * ww, c) if tokens else d.uniform(b, hh, ww, c)
    w = {"qkv/kernel": d.uniform(c, (r + 2) * h * kd, scale=0.5)}
    if cfg.get("qkv_bias"):
        w["qkv/bias"] = d.uniform((r + 2) * h * kd, scale=0.3)
    if cfg.get("use_bn"):
        w.update(bn_weights(d, "qkv_bn", (r + 2) * h * kd))
    w["attn_pos/positional_embedding"] = d.uniform(hh * ww, h, scale=2.0)
    w["out/kernel"] = d.uniform(r * h * kd, o, scale=0.5)
    if cfg.get("out_bias"):
        w["out/bias"] = d.uniform(o, scale=0.3)
    if cfg.get("use_bn"):
        w.update(bn_weights(d, "out_bn", o))
    y, p = levit(x, w, cfg)
    tensors = {"input/x": x, **{f"weights/{k}": v for k, v in w.items()}, "expected/output": y}
    if with_weights:
        tensors["expected/weights"] = p
    return Case(tensors, cfg)


@case("mhsa_with_multi_head_position", "defaults_7x9")
def defaults(d):
    return levit_case(d, 2, {"input_shape": [7, 9, 16], "num_heads": 4}, with_weights=False)


@case("mhsa_with_multi_head_position", "levit_bn_hard_swish_ratio2_biases_5x4")
def levit_like(d):
    return levit_case(d, 2, {"input_shape": [5, 4, 12], "num_heads": 3, "key_dim": 5, "attn_ratio": 2,
                             "output_dim": 10, "use_bn": True, "qkv_bias": True, "out_bias": True,
                             "activation": "hard_swish"})


@case("mhsa_with_multi_head_position", "tokens_3x6")
def tokens(d):
    return levit_case(d, 2, {"input_shape": [3, 6, 8], "num_heads": 2, "attn_height": 3, "use_bn": True},
                      tokens=True)
