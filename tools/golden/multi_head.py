"""Golden cases of the multi_head layer: the reference layout (fused QKV, Keras kernels)."""

import torch

from common import Case, as_float, case, linear, merge_heads, sdpa_reference, split_heads


def multi_head_case(d, e, heads, t, din=None, bias=True, keep=None):
    b = 2
    din = e if din is None else din
    x = d.uniform(b, t, din)
    wqkv = d.uniform(din, 3 * e, scale=0.5)
    wp = d.uniform(e, e, scale=0.5)
    bqkv = d.uniform(3 * e, scale=0.2) if bias else None
    bp = d.uniform(e, scale=0.2) if bias else None
    qkv = linear(x, wqkv, bqkv)
    q, k, v = (split_heads(qkv[..., i * e:(i + 1) * e], heads) for i in range(3))
    allowed = None
    if keep is not None:
        allowed = keep if keep.dim() == 4 else (keep[:, None, None, :] if keep.dim() == 2 else keep[:, None])
    ctx, p = sdpa_reference(q, k, v, keep=allowed)
    y = linear(merge_heads(ctx), wp, bp)
    tensors = {"input/x": x}
    if keep is not None:
        tensors["input/mask"] = as_float(keep)
    tensors["weights/qkv/kernel"] = wqkv
    if bias:
        tensors["weights/qkv/bias"] = bqkv
    tensors["weights/proj/kernel"] = wp
    if bias:
        tensors["weights/proj/bias"] = bp
    tensors["expected/output"] = y
    tensors["expected/weights"] = p
    config = {"embed_dim": e, "num_heads": heads, "use_bias": bias}
    if din != e:
        config["input_dim"] = din
    return Case(tensors, config)


@case("multi_head", "reference_layout")
def mh_basic(d):
    return multi_head_case(d, e=12, heads=3, t=5, din=7)


@case("multi_head", "no_bias")
def mh_no_bias(d):
    return multi_head_case(d, e=8, heads=2, t=6, bias=False)


@case("multi_head", "key_padding")
def mh_padding(d):
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[1, 4:] = False
    return multi_head_case(d, e=8, heads=4, t=6, keep=keep)


@case("multi_head", "mask_rank4_fully_masked_row")
def mh_mask4(d):
    keep = d.keep(2, 2, 5, 5)
    keep[..., 0] = True
    keep[0, 1, 3, :] = False
    return multi_head_case(d, e=8, heads=2, t=5, keep=keep)
