"""Golden cases of the group_query layer (GQA + RoPE), weights from separate q/k/v/o nn.Linear
projections mapped through attn/io/torch.hpp."""

import torch

from common import (Case, as_float, case, merge_heads, rope_half_split, rope_interleaved, rotary_dim,
                    sdpa_reference, split_heads)


def group_query_case(d, d_model, n_head, n_kv, t, pct=1.0, theta=10000.0, bias=False, half_split=False,
                     keep=None, max_seq_len=16, prefix="model.self_attn."):
    b = 2
    hd = d_model // n_head
    r = rotary_dim(hd, pct)
    x = d.uniform(b, t, d_model)
    state = {}
    proj = {}
    for name, out in (("q_proj", n_head * hd), ("k_proj", n_kv * hd), ("v_proj", n_kv * hd), ("o_proj", d_model)):
        w = d.uniform(out, d_model if name != "o_proj" else n_head * hd, scale=0.5)  # nn.Linear [out, in]
        state[f"{prefix}{name}.weight"] = w
        bb = d.uniform(out, scale=0.2) if bias else None
        if bias:
            state[f"{prefix}{name}.bias"] = bb
        proj[name] = (w, bb)

    def lin(z, name):
        w, bb = proj[name]
        return torch.nn.functional.linear(z, w, bb)

    q = split_heads(lin(x, "q_proj"), n_head)
    k = split_heads(lin(x, "k_proj"), n_kv)
    v = split_heads(lin(x, "v_proj"), n_kv)
    rope = rope_half_split if half_split else rope_interleaved
    q, k = rope(q, r, theta), rope(k, r, theta)
    allowed = None
    if keep is not None:
        allowed = keep[:, None] if keep.dim() == 3 else keep
    ctx, p = sdpa_reference(q, k, v, keep=allowed)  # repeats each K/V head n_head / n_kv times
    y = lin(merge_heads(ctx), "o_proj")
    tensors = dict(state)
    tensors["input/x"] = x
    if keep is not None:
        tensors["input/mask"] = as_float(keep)
    tensors["expected/output"] = y
    tensors["expected/weights"] = p
    config = {"d_model": d_model, "n_head": n_head, "n_kv_head": n_kv, "max_seq_len": max_seq_len,
              "rope_percentage": pct, "rope_theta": theta, "use_bias": bias}
    return Case(tensors, config, meta={"torch_prefix": prefix,
                                       "rope_layout": "half_split" if half_split else "interleaved"})


@case("group_query", "rope_gqa")
def gq_basic(d):
    return group_query_case(d, d_model=16, n_head=4, n_kv=2, t=7)


@case("group_query", "rope_partial_mqa_bias")
def gq_partial(d):
    return group_query_case(d, d_model=12, n_head=3, n_kv=1, t=6, pct=0.5, theta=500.0, bias=True)


@case("group_query", "rope_mask_rank3")
def gq_mask(d):
    keep = d.keep(2, 5, 5)
    keep[..., 0] = True
    keep[1, 2, :] = False
    return group_query_case(d, d_model=16, n_head=4, n_kv=4, t=5, keep=keep)


@case("group_query", "rope_half_split")
def gq_half_split(d):
    return group_query_case(d, d_model=16, n_head=4, n_kv=2, t=6, half_split=True)


@case("group_query", "rope_half_split_partial")
def gq_half_split_partial(d):
    return group_query_case(d, d_model=16, n_head=2, n_kv=1, t=5, pct=0.75, half_split=True, bias=True)
