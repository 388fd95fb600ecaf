"""Golden cases of mhsa_with_multi_head_position_and_strides (LeViT's attention subsample, spec §5.6 with §4.4
and the errata), written with torch operators: queries from x[:, ::s, ::s] through their matmul and
batch_norm (eval, eps 1e-5), keys and values from the per-head interleaved k | v matmul and batch_norm, the
MultiHeadPositionalEmbedding index from the spec's formula (query height Hq, stride ceil(sqrt(N / Nq)), key
height H) gathering the [N, h] table, softmax(q kᵀ·d^-0.5 + bias) v, hard_swish, the output matmul and
batch_norm."""

import math

import torch

from common import Case, case
from mhsa_with_multi_head_position import bn, bn_weights, hard_swish, levit_index


def subsample(x, w, cfg):
    hh, ww, c = cfg["input_shape"]
    h, r, s = cfg["num_heads"], cfg.get("attn_ratio", 1), cfg.get("strides", 1)
    d = cfg.get("key_dim", -1)
    d = d if d > 0 else c // h
    use_bn = cfg.get("use_bn", True)
    b = x.shape[0]
    xq = x[:, ::s, ::s, :]
    hq, wq = xq.shape[1], xq.shape[2]
    nq, n = hq * wq, hh * ww
    q = xq.reshape(b, nq, c) @ w["q/kernel"]
    kv = x.reshape(b, n, c) @ w["kv/kernel"]
    if "q/bias" in w:
        q, kv = q + w["q/bias"], kv + w["kv/bias"]
    if use_bn:
        q, kv = bn(q, w, "q_bn"), bn(kv, w, "kv_bn")
    q = q.reshape(b, nq, h, d).transpose(1, 2)
    k, v = kv.reshape(b, n, h, (r + 1) * d).split([d, r * d], dim=-1)
    k, v = k.transpose(1, 2), v.transpose(1, 2)
    stride = math.ceil(math.sqrt(n / nq))
    bias = w["attn_pos/positional_embedding"][levit_index(hq, nq, hh, n, stride)].permute(2, 0, 1)
    p = torch.softmax((q @ k.transpose(-1, -2)) * d ** -0.5 + bias, dim=-1)
    y = (p @ v).transpose(1, 2).reshape(b, nq, r * h * d)
    if cfg.get("activation") == "hard_swish":
        y = hard_swish(y)
    y = y @ w["out/kernel"]
    if "out/bias" in w:
        y = y + w["out/bias"]
    if use_bn:
        y = bn(y, w, "out_bn")
    return y.reshape(b, hq, wq, -1), p


def subsample_case(d, b, cfg):
    hh, ww, c = cfg["input_shape"]
    h, r = cfg["num_heads"], cfg.get("attn_ratio", 1)
    kd = cfg.get("key_dim", -1)
    kd = kd if kd > 0 else c // h
    o = cfg.get("output_dim", -1)
    o = o if o > 0 else c
    use_bn, bias = cfg.get("use_bn", True), cfg.get("qkv_bias", False)
    x = d.uniform(b, hh, ww, c)
    w = {"q/kernel": d.uniform(c, h * kd, scale=0.5)}
    if bias:
        w["q/bias"] = d.uniform(h * kd, scale=0.3)
    if use_bn:
        w.update(bn_weights(d, "q_bn", h * kd))
    w["kv/kernel"] = d.uniform(c, (r + 1) * h * kd, scale=0.5)
    if bias:
        w["kv/bias"] = d.uniform((r + 1) * h * kd, scale=0.3)
    if use_bn:
        w.update(bn_weights(d, "kv_bn", (r + 1) * h * kd))
    w["attn_pos/positional_embedding"] = d.uniform(hh * ww, h, scale=2.0)
    w["out/kernel"] = d.uniform(r * h * kd, o, scale=0.5)
    if cfg.get("out_bias"):
        w["out/bias"] = d.uniform(o, scale=0.3)
    if use_bn:
        w.update(bn_weights(d, "out_bn", o))
    y, p = subsample(x, w, cfg)
    tensors = {"input/x": x, **{f"weights/{k}": v for k, v in w.items()}, "expected/output": y,
               "expected/weights": p}
    return Case(tensors, cfg)


@case("mhsa_with_multi_head_position_and_strides", "strides2_7x9")
def strides2(d):
    return subsample_case(d, 2, {"input_shape": [7, 9, 16], "num_heads": 4, "key_dim": 4, "output_dim": 24,
                                 "strides": 2})


@case("mhsa_with_multi_head_position_and_strides", "strides3_ratio2_biases_hard_swish_no_bn_6x5")
def strides3(d):
    return subsample_case(d, 2, {"input_shape": [6, 5, 12], "num_heads": 3, "key_dim": 4, "attn_ratio": 2,
                                 "output_dim": 10, "strides": 3, "use_bn": False, "qkv_bias": True,
                                 "out_bias": True, "activation": "hard_swish"})
