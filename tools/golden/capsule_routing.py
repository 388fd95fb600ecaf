"""Golden cases of the capsule_routing layer (CapsuleRoutingSelfAttention): multi-head self-attention
whose raw logits A = QK^T / sqrt(d_k) get a vertical routing term (dynamic routing across the heads of
each query row, spread over the heads by a learned softmax) and a horizontal one (positional: routing
over the query rows 0..t, row 0 the raw logit row; otherwise the across-heads route), written loop by
loop from the reference's description with torch operators. Masks replace logits by -1e9 (every case
keeps a key per row)."""

import math

import torch

from common import Case, as_float, case, linear, merge_heads, split_heads


def squash(s, eps):
    n2 = (s * s).sum(dim=-1, keepdim=True)
    return n2 / (1 + n2) * s / torch.sqrt(n2 + eps)


def route(u, iterations, eps):
    """u [I, L]: the input capsules of one output capsule; coupling softmax over the inputs."""
    beta = torch.zeros(u.shape[0], dtype=u.dtype)
    for r in range(iterations):
        c = torch.softmax(beta, dim=0)
        v = squash((c[:, None] * u).sum(dim=0), eps)
        if r < iterations - 1:
            beta = beta + (u * v).sum(dim=-1)
    return v


def routing_terms(a, w_vert, b_vert, iterations, eps, vertical, horizontal, positional):
    """a [B, h, T, T] raw logits -> Vert + Horz (as selected)."""
    b_, h, t_, s_ = a.shape
    out = torch.zeros_like(a)
    if vertical or (horizontal and not positional):
        vt = torch.zeros(b_, t_, s_, dtype=a.dtype)
        for b in range(b_):
            for t in range(t_):
                vt[b, t] = route(a[b, :, t, :], iterations, eps)
    if vertical:
        wsum = w_vert.sum(dim=0)
        bias = b_vert if b_vert is not None else torch.zeros(h, dtype=a.dtype)
        g = vt[..., None] * wsum + bias  # [B, T, S, h]
        pi = torch.softmax(g, dim=-1)
        out = out + (pi * vt[..., None]).permute(0, 3, 1, 2)
    if horizontal:
        if positional:
            horz = torch.zeros_like(a)
            for b in range(b_):
                for i in range(h):
                    horz[b, i, 0] = a[b, i, 0]
                    for t in range(1, t_):
                        horz[b, i, t] = route(a[b, i, :t + 1, :], iterations, eps)
            out = out + horz
        else:
            out = out + vt[:, None]
    return out


def capsule_case(d, heads, dim, t, dk=None, dv=None, bias=True, iterations=3, vertical=True, horizontal=True,
                 positional=True, eps=1e-8, keep=None, scale_x=1.0):
    b = 2
    dk_ = dk or dim // heads
    dv_ = dv or dk_
    x = d.uniform(b, t, dim, scale=scale_x)
    w = {}
    for name, width, s in (("query", heads * dk_, 1.0), ("key", heads * dk_, 1.0), ("value", heads * dv_, 0.5)):
        w[name + "/kernel"] = d.uniform(dim, width, scale=s)
        if bias:
            w[name + "/bias"] = d.uniform(width, scale=0.2)
    w["output/kernel"] = d.uniform(heads * dv_, dim, scale=0.5)
    if bias:
        w["output/bias"] = d.uniform(dim, scale=0.2)
    if vertical:
        w["vertical_aggregation_weights"] = d.uniform(heads, heads)
        if bias:
            w["vertical_aggregation_bias"] = d.uniform(heads, scale=0.3)
    q = split_heads(linear(x, w["query/kernel"], w.get("query/bias")), heads)
    k = split_heads(linear(x, w["key/kernel"], w.get("key/bias")), heads)
    v = split_heads(linear(x, w["value/kernel"], w.get("value/bias")), heads)
    a = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dk_)
    z = a + routing_terms(a, w.get("vertical_aggregation_weights"), w.get("vertical_aggregation_bias"), iterations,
                          eps, vertical, horizontal, positional)
    if keep is not None:
        allowed = keep[:, None, None, :] if keep.dim() == 2 else keep[:, None, :, :]
        z = torch.where(allowed, z, torch.full_like(z, -1e9))
    p = torch.softmax(z, dim=-1)
    y = linear(merge_heads(torch.matmul(p, v)), w["output/kernel"], w.get("output/bias"))
    tensors = {"input/x": x}
    if keep is not None:
        tensors["input/mask"] = as_float(keep)
    for name, value in w.items():
        tensors["weights/" + name] = value
    tensors["expected/output"] = y
    tensors["expected/weights"] = p
    config = {"num_heads": heads, "use_bias": bias, "routing_iterations": iterations,
              "use_vertical_routing": vertical, "use_horizontal_routing": horizontal,
              "use_positional_routing": positional, "input_dim": dim}
    if dk:
        config["key_dim"] = dk
    if dv:
        config["value_dim"] = dv
    if eps != 1e-8:
        config["epsilon"] = eps
    return Case(tensors, config)


@case("capsule_routing", "defaults")
def capsule_defaults(d):
    return capsule_case(d, heads=2, dim=8, t=6, scale_x=1.5)


@case("capsule_routing", "key_padding_dims_one_iteration")
def capsule_padding(d):
    keep = d.keep(2, 7, p=0.7)
    keep[:, 0] = True
    return capsule_case(d, heads=3, dim=9, t=7, dk=4, dv=2, iterations=1, keep=keep)


@case("capsule_routing", "across_heads_mask_no_bias")
def capsule_heads(d):
    keep = d.keep(2, 5, 5, p=0.6)
    keep[:, :, 1] = True
    return capsule_case(d, heads=4, dim=8, t=5, bias=False, positional=False, iterations=4, eps=1e-3, keep=keep)


@case("capsule_routing", "horizontal_only")
def capsule_horizontal(d):
    return capsule_case(d, heads=2, dim=6, t=5, vertical=False)
