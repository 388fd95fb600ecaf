"""Golden cases of the attention_block layer: one Transformer encoder layer over the flattened map built
from torch operators — F.layer_norm (eps 1e-6), the inner attention as the golden data of that type
computes it (Keras MultiHeadAttention with rank-3 kernels and Q scaled first; Swin's window attention on
the map from window.py: padding, roll, partition, bias table, mask, reverse; grouped-query attention
with interleaved RoPE; the two-branch differential attention from differential.py), linear layers, the
exact erf GELU, pre- or post-norm residuals, then the per-channel layer scale over the whole output."""

import math

import torch
import torch.nn.functional as F

from common import Case, case, linear, merge_heads, rope_angles, rope_interleaved, rotary_dim, sdpa_reference, split_heads
from differential import branch_weights, lam, project
from window import draw_weights, window_map

EPS = 1e-6


def kmha(x, w, heads):
    """Keras MultiHeadAttention self-attention: einsum projections with [D, h, d] kernels, Q scaled by
    1/sqrt(d) before Q·Kᵀ, softmax, the [h, d, D] output kernel."""
    d = w["query/kernel"].shape[2]
    q = torch.einsum("bnD,Dhd->bhnd", x, w["query/kernel"]) + w["query/bias"][None, :, None, :]
    k = torch.einsum("bnD,Dhd->bhnd", x, w["key/kernel"]) + w["key/bias"][None, :, None, :]
    v = torch.einsum("bnD,Dhd->bhnd", x, w["value/kernel"]) + w["value/bias"][None, :, None, :]
    p = torch.softmax((q / math.sqrt(d)) @ k.transpose(-1, -2), dim=-1)
    o = p @ v  # [B, h, N, d]
    return torch.einsum("bhnd,hdD->bnD", o, w["attention_output/kernel"]) + w["attention_output/bias"], p


def gqa(x, w, heads, n_kv, rotary, theta):
    q = split_heads(linear(x, w["w_q/kernel"], w["w_q/bias"]), heads)
    k = split_heads(linear(x, w["w_k/kernel"], w["w_k/bias"]), n_kv)
    v = split_heads(linear(x, w["w_v/kernel"], w["w_v/bias"]), n_kv)
    q, k = rope_interleaved(q, rotary, theta), rope_interleaved(k, rotary, theta)
    ctx, p = sdpa_reference(q, k, v)  # K/V heads repeated n_head / n_kv_head times
    return linear(merge_heads(ctx), w["w_o/kernel"], w["w_o/bias"]), p


def differential(x, w, heads, layer_idx):
    outs = []
    for a in ("attention1/", "attention2/"):
        wa = {n[len(a):]: t for n, t in w.items() if n.startswith(a)}
        q, k, v = project(x, wa, "query", heads), project(x, wa, "key", heads), project(x, wa, "value", heads)
        ctx, _ = sdpa_reference(q, k, v)
        ko = wa["attention_output/kernel"]
        outs.append(linear(merge_heads(ctx), ko.reshape(-1, x.shape[-1]), wa["attention_output/bias"]))
    lmb = lam(layer_idx, float(w["lambda_param"][0]))
    return linear(outs[0] - lmb * outs[1], w["proj/kernel"], w["proj/bias"]), None


def block(x, w, inner, pre):
    b, h, wd, c = x.shape
    t = x.reshape(b, h * wd, c)

    def ln(z, name):
        return F.layer_norm(z, (c,), w[f"vision_transformer/{name}/gamma"], w[f"vision_transformer/{name}/beta"], EPS)

    def mlp(z):
        hid = F.gelu(linear(z, w["vision_transformer/ffn/fc1/kernel"], w["vision_transformer/ffn/fc1/bias"]))
        return linear(hid, w["vision_transformer/ffn/fc2/kernel"], w["vision_transformer/ffn/fc2/bias"])

    def attend(z):
        a, p = inner(z.reshape(b, h, wd, c))
        return a.reshape(b, h * wd, c), p

    if pre:
        a, p = attend(ln(t, "attention_norm"))
        u = t + a
        y = u + mlp(ln(u, "output_norm"))
    else:
        a, p = attend(t)
        u = ln(t + a, "attention_norm")
        y = ln(u + mlp(u), "output_norm")
    y = y.reshape(b, h, wd, c)
    if "layer_scale/gamma" in w:
        y = y * w["layer_scale/gamma"]
    return y, p


def block_case(d, attention_type, pre=True, dim=12, heads=3, mlp_ratio=2.0, b=3, h=7, wd=9, layer_scale=True,
               args=None, attention_config=None, with_weights=False):
    args = args or {}
    hd = dim // heads
    hidden = int(dim * mlp_ratio)
    x = d.uniform(b, h, wd, dim)
    w = {}
    for name in ("attention_norm", "output_norm"):
        w[f"vision_transformer/{name}/gamma"] = 1 + d.uniform(dim, scale=0.3)
        w[f"vision_transformer/{name}/beta"] = d.uniform(dim, scale=0.2)
    p = "vision_transformer/attention/"
    if attention_type == "multi_head_attention":
        inner_w = {
            "query/kernel": d.uniform(dim, heads, hd, scale=0.5), "query/bias": d.uniform(heads, hd, scale=0.2),
            "key/kernel": d.uniform(dim, heads, hd, scale=0.5), "key/bias": d.uniform(heads, hd, scale=0.2),
            "value/kernel": d.uniform(dim, heads, hd, scale=0.5), "value/bias": d.uniform(heads, hd, scale=0.2),
            "attention_output/kernel": d.uniform(heads, hd, dim, scale=0.5),
            "attention_output/bias": d.uniform(dim, scale=0.2)}

        def inner(z):
            bb, hh, ww, cc = z.shape
            return kmha(z.reshape(bb, hh * ww, cc), inner_w, heads)
    elif attention_type == "window_attention":
        ws, shift = args.get("window_size", 8), args.get("shift_size", 0)
        wqkv, bqkv, wp, bp, table = draw_weights(d, dim, ws, heads)
        inner_w = {"qkv/kernel": wqkv, "qkv/bias": bqkv, "proj/kernel": wp, "proj/bias": bp,
                   "relative_position_bias_table": table}

        def inner(z):
            return window_map(z, (wqkv, bqkv, wp, bp, table), ws, heads, shift)
    elif attention_type == "group_query_attention":
        n_kv, max_len = args.get("n_kv_head", heads), args.get("max_seq_len", 2048)
        theta, pct = args.get("rope_theta", 10000.0), args.get("rope_percentage", 1.0)
        r = rotary_dim(hd, pct)
        inner_w = {}
        for name, out in (("w_q", heads * hd), ("w_k", n_kv * hd), ("w_v", n_kv * hd), ("w_o", dim)):
            inner_w[f"{name}/kernel"] = d.uniform(dim, out, scale=0.5)
            inner_w[f"{name}/bias"] = d.uniform(out, scale=0.2)
        angles = rope_angles(max_len, r, theta)  # the stored non-trainable tables [max_seq_len, r/2]
        inner_w["rope/cos_cached"] = torch.cos(angles)
        inner_w["rope/sin_cached"] = torch.sin(angles)

        def inner(z):
            bb, hh, ww, cc = z.shape
            return gqa(z.reshape(bb, hh * ww, cc), inner_w, heads, n_kv, r, theta)
    elif attention_type == "differential_attention":
        dh = args.get("head_dim", hd)
        inner_w = {}
        for a in ("attention1/", "attention2/"):
            inner_w.update({a + n: t for n, t in branch_weights(d, dim, heads, dh).items()})
        inner_w["proj/kernel"] = d.uniform(dim, dim, scale=0.5)
        inner_w["proj/bias"] = d.uniform(dim, scale=0.2)
        inner_w["lambda_param"] = (0.8 + d.uniform(1, scale=0.1)).to(d.dtype).to(torch.float64)

        def inner(z):
            bb, hh, ww, cc = z.shape
            return differential(z.reshape(bb, hh * ww, cc), inner_w, heads, args.get("layer_idx", 0))
    else:
        raise ValueError(attention_type)
    w.update({p + n: t for n, t in inner_w.items()})
    w["vision_transformer/ffn/fc1/kernel"] = d.uniform(dim, hidden, scale=0.5)
    w["vision_transformer/ffn/fc1/bias"] = d.uniform(hidden, scale=0.2)
    w["vision_transformer/ffn/fc2/kernel"] = d.uniform(hidden, dim, scale=0.5)
    w["vision_transformer/ffn/fc2/bias"] = d.uniform(dim, scale=0.2)
    if layer_scale:
        w["layer_scale/gamma"] = 0.5 + d.uniform(dim, scale=0.4)
    y, prob = block(x, w, inner, pre)
    tensors = {"input/x": x, **{f"weights/{k}": v for k, v in w.items()}, "expected/output": y}
    if with_weights:  # only where they add something: the files stay small
        tensors["expected/weights"] = prob
    config = {"dim": dim, "num_heads": heads, "mlp_ratio": mlp_ratio,
              "attention_type": attention_config or attention_type,
              "normalization_position": "pre" if pre else "post", "use_layer_scale": layer_scale}
    if args:
        config["attention_args"] = args
    return Case(tensors, config)


@case("attention_block", "multi_head_pre_7x9_b3")
def mh_pre(d):
    return block_case(d, "multi_head_attention", pre=True, with_weights=True)


@case("attention_block", "multi_head_post_7x9_b3_no_scale")
def mh_post(d):
    return block_case(d, "multi_head_attention", pre=False, layer_scale=False, mlp_ratio=1.3,
                      attention_config="multi_head")


@case("attention_block", "window_shifted_pre_7x9_b3")
def win_pre(d):
    return block_case(d, "window_attention", pre=True, args={"window_size": 4, "shift_size": 2},
                      with_weights=True)


@case("attention_block", "window_post_7x9_b3")
def win_post(d):
    return block_case(d, "window_attention", pre=False, args={"window_size": 3}, attention_config="window")


@case("attention_block", "window_default_8x8")
def win_default(d):
    # the reference's only runnable window case: an 8x8 map is one window of its window_size 8
    return block_case(d, "window_attention", pre=True, b=2, h=8, wd=8, dim=8, heads=2)


@case("attention_block", "group_query_pre_7x9_b3")
def gq_pre(d):
    return block_case(d, "group_query_attention", pre=True, dim=16, heads=4,
                      args={"n_kv_head": 2, "max_seq_len": 64})


@case("attention_block", "differential_post_7x9_b3")
def diff_post(d):
    return block_case(d, "differential_attention", pre=False, args={"layer_idx": 2})
