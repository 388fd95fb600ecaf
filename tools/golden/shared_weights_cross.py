"""Golden cases of the shared_weights_cross layer: one fused QKV projection, each modality attends to
the other (two-way split) or to the other's anchors (four-way split)."""

from common import Case, case, linear, merge_heads, sdpa_reference, split_heads

import torch


def swc_case(d, dim, heads, splits, bias=True):
    b = 2
    n = sum(splits)
    x = d.uniform(b, n, dim)
    wqkv = d.uniform(dim, 3 * dim, scale=0.5)
    wp = d.uniform(dim, dim, scale=0.5)
    bqkv = d.uniform(3 * dim, scale=0.2) if bias else None
    bp = d.uniform(dim, scale=0.2) if bias else None
    qkv = linear(x, wqkv, bqkv)
    q, k, v = (split_heads(qkv[..., i * dim:(i + 1) * dim], heads) for i in range(3))
    if len(splits) == 2:
        na, a_keys, b_keys = splits[0], slice(0, splits[0]), slice(splits[0], n)
    else:
        na = splits[0] + splits[1]
        a_keys, b_keys = slice(0, splits[0]), slice(na, na + splits[2])
    oa, _ = sdpa_reference(q[:, :, :na], k[:, :, b_keys], v[:, :, b_keys])
    ob, _ = sdpa_reference(q[:, :, na:], k[:, :, a_keys], v[:, :, a_keys])
    y = linear(merge_heads(torch.cat([oa, ob], dim=2)), wp, bp)
    tensors = {"input/x": x, "weights/qkv/kernel": wqkv}
    if bias:
        tensors["weights/qkv/bias"] = bqkv
    tensors["weights/proj/kernel"] = wp
    if bias:
        tensors["weights/proj/bias"] = bp
    tensors["expected/output"] = y
    return Case(tensors, {"dim": dim, "num_heads": heads, "use_bias": bias, "split_sizes": list(splits)})


@case("shared_weights_cross", "two_way")
def swc_two(d):
    return swc_case(d, dim=8, heads=2, splits=[3, 5])


@case("shared_weights_cross", "four_way_no_bias")
def swc_four(d):
    return swc_case(d, dim=12, heads=3, splits=[2, 1, 3, 2], bias=False)
