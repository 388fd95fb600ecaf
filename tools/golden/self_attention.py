"""Golden cases of the self_attention layer: separate query/key/value projections in attn's names
(Keras layout [in, out]), heads, an optional output projection, causal and key-padding masks."""

import math

import torch

from common import Case, as_float, case, linear, merge_heads, sdpa_reference, split_heads


def projected_case(d, e, heads, t, s=None, ctx_dim=None, bias=True, output_projection=False, causal=False,
                   keep=None, scale=None):
    """Q = x·Wq (+ bq), K = c·Wk (+ bk), V = c·Wv (+ bv); y = merge(softmax(Q Kᵀ·scale masked) V) (·Wo + bo).
    Self-attention when s is None (c = x); `keep` is [B, S], [B, T, S] or [B, 1|H, T, S] (True = attend)."""
    b = 2
    cross = s is not None
    ctx_dim = e if ctx_dim is None else ctx_dim
    x = d.uniform(b, t, e)
    c = d.uniform(b, s, ctx_dim) if cross else x
    tensors = {"input/x": x}
    if cross:
        tensors["input/context"] = c
    if keep is not None:
        tensors["input/mask"] = as_float(keep)
    w = {}
    for name, fan_in in (("query", e), ("key", ctx_dim), ("value", ctx_dim)) + ((("output", e),) if output_projection else ()):
        w[name] = (d.uniform(fan_in, e, scale=0.5), d.uniform(e, scale=0.2) if bias else None)
        tensors[f"weights/{name}/kernel"] = w[name][0]
        if bias:
            tensors[f"weights/{name}/bias"] = w[name][1]
    q = split_heads(linear(x, *w["query"]), heads)
    k = split_heads(linear(c, *w["key"]), heads)
    v = split_heads(linear(c, *w["value"]), heads)
    allowed = None
    if keep is not None:
        allowed = {2: lambda m: m[:, None, None, :], 3: lambda m: m[:, None], 4: lambda m: m}[keep.dim()](keep)
    s_ = 1.0 / math.sqrt(e // heads) if scale is None else scale
    ctx, p = sdpa_reference(q, k, v, keep=allowed, causal=causal, scale=s_)
    y = merge_heads(ctx)
    if output_projection:
        y = linear(y, *w["output"])
    tensors["expected/output"] = y
    tensors["expected/weights"] = p
    config = {"embed_dim": e, "num_heads": heads, "use_bias": bias, "output_projection": output_projection}
    if cross:
        config["context_dim"] = ctx_dim
        if scale is not None:
            config["scale"] = scale
    else:
        config["causal"] = causal
    return Case(tensors, config)


@case("self_attention", "single_head")
def self_single_head(d):
    # the seed's SelfAttention: one head, no output projection, scaled by 1/sqrt(D)
    return projected_case(d, e=6, heads=1, t=5)


@case("self_attention", "heads_output_projection_causal")
def self_heads_causal(d):
    return projected_case(d, e=8, heads=2, t=6, output_projection=True, causal=True)


@case("self_attention", "key_padding_no_bias")
def self_padding(d):
    keep = torch.ones(2, 5, dtype=torch.bool)
    keep[1, 3:] = False
    return projected_case(d, e=12, heads=3, t=5, bias=False, output_projection=True, keep=keep)


@case("self_attention", "mask_rank3_fully_masked_row")
def self_mask3(d):
    keep = d.keep(2, 4, 4)
    keep[..., 0] = True
    keep[0, 2, :] = False  # item 0, query 2 sees nothing: zeros
    return projected_case(d, e=8, heads=4, t=4, keep=keep)
