"""Golden cases of the anchor layer (AnchorAttention): standard mode (fused QKV over every token) and
anchor mode (anchors through the fused projection, the other tokens' queries through `q_query`,
every token attending to the anchors only); weights in the reference's names (Keras layout [in, out])."""

import torch

from common import Case, case, linear, merge_heads, sdpa_reference, split_heads


def anchor_case(d, dim, heads, n, anchors=None, bias=True):
    b = 2
    x = d.uniform(b, n, dim)
    wqkv = d.uniform(dim, 3 * dim, scale=0.5)
    bqkv = d.uniform(3 * dim, scale=0.2) if bias else None
    wqq = d.uniform(dim, dim, scale=0.5)
    bqq = d.uniform(dim, scale=0.2) if bias else None
    wp = d.uniform(dim, dim, scale=0.5)
    bp = d.uniform(dim, scale=0.2) if bias else None
    a = n if anchors is None else anchors
    qkv = linear(x[:, :a], wqkv, bqkv)
    qa, ka, va = (split_heads(qkv[..., i * dim:(i + 1) * dim], heads) for i in range(3))
    if a < n:
        qq = split_heads(linear(x[:, a:], wqq, bqq), heads)
        q = torch.cat([qa, qq], dim=2)
    else:
        q = qa
    ctx, _ = sdpa_reference(q, ka, va)
    y = linear(merge_heads(ctx), wp, bp)
    tensors = {"input/x": x, "weights/qkv/kernel": wqkv}
    if bias:
        tensors["weights/qkv/bias"] = bqkv
    tensors["weights/q_query/kernel"] = wqq
    if bias:
        tensors["weights/q_query/bias"] = bqq
    tensors["weights/proj/kernel"] = wp
    if bias:
        tensors["weights/proj/bias"] = bp
    tensors["expected/output"] = y
    config = {"dim": dim, "num_heads": heads, "use_bias": bias}
    if anchors is not None:
        config["num_anchor_tokens"] = anchors
    return Case(tensors, config)


@case("anchor", "standard")
def anchor_standard(d):
    return anchor_case(d, dim=12, heads=3, n=5)


@case("anchor", "anchors_2_of_7")
def anchor_two(d):
    return anchor_case(d, dim=8, heads=2, n=7, anchors=2)


@case("anchor", "one_anchor_no_bias")
def anchor_one(d):
    return anchor_case(d, dim=8, heads=4, n=6, anchors=1, bias=False)


@case("anchor", "anchors_equal_tokens")
def anchor_all(d):
    return anchor_case(d, dim=8, heads=2, n=4, anchors=4)
