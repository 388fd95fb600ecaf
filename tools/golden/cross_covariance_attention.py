"""Golden cases of cross_covariance_attention (EdgeNeXt's XCA, spec §5.2 and errata), written with torch
operators from the spec's formulas: the qkv matmul (always with a bias), Q [B, h, d, N] and K [B, h, N, d]
l2-normalized over the tokens with TensorFlow's clamp of the squared norm (x / sqrt(max(sum x², 1e-6))),
softmax(τ_h · Q̂ K̂) over the key channels, A V, merged heads, the output matmul."""

import torch

from common import Case, case


def xca(x, w, cfg):
    b, c = x.shape[0], x.shape[-1]
    h = cfg.get("num_heads", 4)
    d = cfg.get("key_dim", 0) or c // h
    e = h * d
    t = x.reshape(b, -1, c) @ w["qkv/kernel"] + w["qkv/bias"]
    n = t.shape[1]
    q, k, v = t.split([e, e, e], dim=-1)
    q = q.reshape(b, n, h, d).permute(0, 2, 3, 1)  # [B, h, d, N]
    k = k.reshape(b, n, h, d).permute(0, 2, 1, 3)  # [B, h, N, d]
    v = v.reshape(b, n, h, d).permute(0, 2, 3, 1)  # [B, h, d, N]
    q = q / torch.sqrt(torch.clamp((q * q).sum(dim=-1, keepdim=True), min=1e-6))
    k = k / torch.sqrt(torch.clamp((k * k).sum(dim=-2, keepdim=True), min=1e-6))
    a = torch.softmax((q @ k) * w["temperature/no_weight_decay/weight"], dim=-1)  # [B, h, d, d]
    y = (a @ v).permute(0, 3, 1, 2).reshape(b, n, e) @ w["output/kernel"]
    if "output/bias" in w:
        y = y + w["output/bias"]
    return y.reshape(*x.shape[:-1], e), a


def xca_case(d, b, hh, ww, cfg):
    c, h = cfg["channels"], cfg.get("num_heads", 4)
    e = h * (cfg.get("key_dim", 0) or c // h)
    x = d.uniform(b, hh, ww, c)
    w = {"qkv/kernel": d.uniform(c, 3 * e, scale=0.5), "qkv/bias": d.uniform(3 * e, scale=0.3),
         "temperature/no_weight_decay/weight": 0.5 + d.uniform(h, 1, 1, scale=2.0).abs(),
         "output/kernel": d.uniform(e, e, scale=0.5)}
    if cfg.get("out_bias", True):
        w["output/bias"] = d.uniform(e, scale=0.3)
    y, a = xca(x, w, cfg)
    tensors = {"input/x": x, **{f"weights/{k}": v for k, v in w.items()}, "expected/output": y,
               "expected/weights": a}
    return Case(tensors, cfg)


@case("cross_covariance_attention", "defaults_7x9")
def defaults(d):
    return xca_case(d, 2, 7, 9, {"channels": 16})


@case("cross_covariance_attention", "key_dim_no_out_bias_qkv_bias_ignored_5x3")
def options(d):
    return xca_case(d, 3, 5, 3, {"channels": 10, "num_heads": 3, "key_dim": 5, "qkv_bias": False,
                                 "out_bias": False})
