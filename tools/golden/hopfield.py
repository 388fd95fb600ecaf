"""Golden cases of the hopfield layer: projections, a LayerNorm shared by queries and keys, and the
update steps xi <- softmax(xi K^T / sqrt(d_k)) K with the early exit decided per batch item."""

import math

import torch

from common import Case, as_float, case, linear, merge_heads, sdpa_reference, split_heads


def layer_norm(x, g, b):
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * g + b


def hopfield_case(d, heads, dk, dv, din, t, s, steps, eps, normalize=True, bias=True, cross=0, keep=None):
    b = 3
    xq = d.uniform(b, t, din)
    xk = d.uniform(b, s, din) if cross else xq
    xv = (d.uniform(b, s, din) if cross == 3 else xk)
    w = {}
    w["query_dense/kernel"] = d.uniform(din, heads * dk)
    if bias:
        w["query_dense/bias"] = d.uniform(heads * dk, scale=0.2)
    w["key_dense/kernel"] = d.uniform(din, heads * dk)
    if bias:
        w["key_dense/bias"] = d.uniform(heads * dk, scale=0.2)
    w["value_dense/kernel"] = d.uniform(din, heads * dv, scale=0.5)
    if bias:
        w["value_dense/bias"] = d.uniform(heads * dv, scale=0.2)
    w["output_dense/kernel"] = d.uniform(heads * dv, din, scale=0.5)
    if bias:
        w["output_dense/bias"] = d.uniform(din, scale=0.2)
    if normalize:
        w["pattern_norm/gamma"] = 1 + d.uniform(dk, scale=0.3)
        w["pattern_norm/beta"] = d.uniform(dk, scale=0.3)
    q = split_heads(linear(xq, w["query_dense/kernel"], w.get("query_dense/bias")), heads)
    k = split_heads(linear(xk, w["key_dense/kernel"], w.get("key_dense/bias")), heads)
    v = split_heads(linear(xv, w["value_dense/kernel"], w.get("value_dense/bias")), heads)
    if normalize:
        q = layer_norm(q, w["pattern_norm/gamma"], w["pattern_norm/beta"])
        k = layer_norm(k, w["pattern_norm/gamma"], w["pattern_norm/beta"])
    allowed = None
    if keep is not None:
        allowed = keep[:, None, None, :]
    outs, ps, counts = [], [], []
    for i in range(b):
        xi = q[i:i + 1]
        ki, vi = k[i:i + 1], v[i:i + 1]
        ai = None if allowed is None else allowed[i:i + 1]
        prev, n = None, 0
        while True:
            o, p = sdpa_reference(xi, ki, vi, keep=ai, scale=1.0 / math.sqrt(dk))
            if steps == 0:
                break
            if prev is not None:
                norm = float(torch.sqrt(((p - prev) ** 2).sum()))
                # the decision must not hang on rounding: keep every norm away from eps
                assert abs(norm - eps) > 0.05 * eps, (norm, eps)
                if norm < eps:
                    break
            if n >= steps:
                break
            prev, n = p, n + 1
            xi = torch.matmul(p, ki)
        outs.append(o)
        ps.append(p)
        counts.append(n)
    o = torch.cat(outs, dim=0)
    y = linear(merge_heads(o), w["output_dense/kernel"], w.get("output_dense/bias"))
    tensors = {}
    if cross:
        tensors["input/query"] = xq
        tensors["input/key"] = xk
        tensors["input/value"] = xv
    else:
        tensors["input/x"] = xq
    if keep is not None:
        tensors["input/mask"] = as_float(keep)
    for n_, t_ in w.items():
        tensors["weights/" + n_] = t_
    tensors["expected/output"] = y
    tensors["expected/weights"] = torch.cat(ps, dim=0)
    config = {"num_heads": heads, "key_dim": dk, "value_dim": dv, "input_dim": din, "use_bias": bias,
              "normalize_patterns": normalize, "update_steps_max": steps, "update_steps_eps": eps}
    return Case(tensors, config, meta={"steps_per_item": counts})


@case("hopfield", "plain_attention")
def hop_plain(d):
    return hopfield_case(d, heads=2, dk=4, dv=3, din=6, t=5, s=5, steps=0, eps=1e-4, normalize=False)


@case("hopfield", "update_steps_self")
def hop_steps(d):
    return hopfield_case(d, heads=2, dk=4, dv=4, din=8, t=5, s=5, steps=4, eps=0.3)


@case("hopfield", "update_steps_cross_padding")
def hop_cross(d):
    keep = torch.ones(3, 7, dtype=torch.bool)
    keep[1, 5:] = False
    return hopfield_case(d, heads=3, dk=2, dv=3, din=5, t=4, s=7, steps=3, eps=0.35, bias=False, cross=3,
                         keep=keep)
