"""Golden cases of attn::scaled_dot_product_attention and attn::dot_product_attention (tests/io/test_golden.cpp)."""

import json

import torch

from common import Case, as_float, case, prefix_padding, sdpa_reference


def sdpa_case(d, q_shape, kv_heads=None, s=None, dv=None, keep_shape=None, keep_fn=None, bias_shape=None,
              causal=False, scale=None, function="scaled_dot_product_attention"):
    rank4 = len(q_shape) == 4
    b, t, dk = q_shape[0], q_shape[-2], q_shape[-1]
    s = t if s is None else s
    dv = dk if dv is None else dv
    if rank4:
        h = q_shape[1]
        hkv = h if kv_heads is None else kv_heads
        q = d.uniform(b, h, t, dk)
        k = d.uniform(b, hkv, s, dk)
        v = d.uniform(b, hkv, s, dv)
    else:
        q = d.uniform(b, t, dk)
        k = d.uniform(b, s, dk)
        v = d.uniform(b, s, dv)
    tensors = {"input/q": q, "input/k": k, "input/v": v}
    keep = None
    if keep_shape is not None:
        keep = keep_fn(d, keep_shape) if keep_fn else d.keep(*keep_shape)
        tensors["input/mask"] = as_float(keep)
    bias = None
    if bias_shape is not None:
        bias = d.uniform(*bias_shape, scale=2.0)
        tensors["input/bias"] = bias
    if function == "dot_product_attention":
        out, p = sdpa_reference(q, k, v, scale=1.0)
    else:
        out, p = sdpa_reference(q, k, v, keep=keep, bias=bias, causal=causal, scale=scale)
    tensors["expected/output"] = out
    tensors["expected/weights"] = p
    return Case(tensors, {"function": function, "causal": causal, "scale": scale})


@case("sdpa", "no_mask")
def sdpa_no_mask(d):
    return sdpa_case(d, (2, 3, 5, 4), dv=6)


@case("sdpa", "dot_product_unscaled")
def sdpa_dot_product(d):
    return sdpa_case(d, (2, 2, 4, 3), s=6, function="dot_product_attention")


@case("sdpa", "causal_t_lt_s")
def sdpa_causal_t_lt_s(d):
    return sdpa_case(d, (2, 2, 3, 4), s=7, causal=True)


@case("sdpa", "causal_t_gt_s")
def sdpa_causal_t_gt_s(d):
    # bottom-right alignment: the first T - S query rows see no key and must be zeros
    return sdpa_case(d, (1, 2, 6, 4), s=4, causal=True)


@case("sdpa", "key_padding")
def sdpa_key_padding(d):
    c = sdpa_case(d, (3, 2, 4, 5), s=6, keep_shape=(3, 1, 1, 6), keep_fn=prefix_padding)
    # the same padding as attn's key_lengths option
    c.meta["key_lengths"] = json.dumps([int(n) for n in c.tensors["input/mask"].sum(dim=-1).flatten().tolist()])
    return c


@case("sdpa", "bool_mask")
def sdpa_bool_mask(d):
    def no_empty_row(d, shape):
        keep = d.keep(*shape)
        keep[..., 0] = True
        return keep
    return sdpa_case(d, (2, 3, 5, 4), s=6, keep_shape=(2, 1, 5, 6), keep_fn=no_empty_row)


@case("sdpa", "additive_mask")
def sdpa_additive(d):
    c = sdpa_case(d, (2, 3, 4, 5), s=5, bias_shape=(3, 4, 5))
    # a few blocked logits (-inf), never a whole row: recompute with them
    bias = c.tensors["input/bias"].clone()
    bias[0, 1, 2] = float("-inf")
    bias[2, 3, 0] = float("-inf")
    bias[1, 0, 4] = -1e9
    t = c.tensors
    out, p = sdpa_reference(t["input/q"], t["input/k"], t["input/v"], bias=bias)
    t["input/bias"], t["expected/output"], t["expected/weights"] = bias, out, p
    return c


@case("sdpa", "additive_and_bool_causal")
def sdpa_additive_bool_causal(d):
    return sdpa_case(d, (2, 2, 5, 4), s=5, keep_shape=(2, 1, 1, 5), bias_shape=(2, 1, 5, 5), causal=True,
                     keep_fn=prefix_padding)


@case("sdpa", "fully_masked_row")
def sdpa_fully_masked(d):
    def with_empty_rows(d, shape):
        keep = d.keep(*shape)
        keep[..., 0] = True
        keep[0, 1, 2, :] = False  # item 0, head 1, query 2 sees nothing
        keep[1, 0, 0, :] = False
        return keep
    return sdpa_case(d, (2, 2, 4, 3), s=5, keep_shape=(2, 2, 4, 5), keep_fn=with_empty_rows)


@case("sdpa", "grouped_query")
def sdpa_gqa(d):
    return sdpa_case(d, (2, 6, 4, 4), kv_heads=2, s=5, dv=3, causal=True)


@case("sdpa", "rank3_scale_mask_bias")
def sdpa_rank3(d):
    def keep3(d, shape):
        keep = d.keep(*shape)
        keep[..., -1] = True
        return keep
    return sdpa_case(d, (2, 4, 5), s=6, dv=3, keep_shape=(2, 4, 6), keep_fn=keep3, bias_shape=(4, 6), scale=0.37)
