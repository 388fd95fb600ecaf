"""Golden cases of the perceiver layer (PerceiverAttention): queries through `q`, keys and values through
the fused `kv` projection (columns [0, dim) K, [dim, 2·dim) V), heads merged, then `proj`; weights in
the reference's names (Keras layout [in, out])."""

import torch

from common import Case, as_float, case, linear, merge_heads, sdpa_reference, split_heads


def perceiver_case(d, dim, heads, t, s=None, bias=True, keep=None, causal=False):
    b = 2
    xq = d.uniform(b, t, dim)
    xkv = xq if s is None else d.uniform(b, s, dim)
    wq = d.uniform(dim, dim, scale=0.5)
    bq = d.uniform(dim, scale=0.2) if bias else None
    wkv = d.uniform(dim, 2 * dim, scale=0.5)
    bkv = d.uniform(2 * dim, scale=0.2) if bias else None
    wp = d.uniform(dim, dim, scale=0.5)
    bp = d.uniform(dim, scale=0.2) if bias else None
    q = split_heads(linear(xq, wq, bq), heads)
    kv = linear(xkv, wkv, bkv)
    k, v = split_heads(kv[..., :dim], heads), split_heads(kv[..., dim:], heads)
    allowed = None
    if keep is not None:
        allowed = keep[:, None, None, :] if keep.dim() == 2 else keep
    ctx, p = sdpa_reference(q, k, v, keep=allowed, causal=causal)
    y = linear(merge_heads(ctx), wp, bp)
    tensors = {"input/query": xq}
    if s is not None:
        tensors["input/kv"] = xkv
    if keep is not None:
        tensors["input/mask"] = as_float(keep)
    tensors["weights/q/kernel"] = wq
    if bias:
        tensors["weights/q/bias"] = bq
    tensors["weights/kv/kernel"] = wkv
    if bias:
        tensors["weights/kv/bias"] = bkv
    tensors["weights/proj/kernel"] = wp
    if bias:
        tensors["weights/proj/bias"] = bp
    tensors["expected/output"] = y
    tensors["expected/weights"] = p
    return Case(tensors, {"dim": dim, "num_heads": heads, "use_bias": bias}, meta={"causal": int(causal)})


@case("perceiver", "cross")
def perceiver_cross(d):
    return perceiver_case(d, dim=12, heads=3, t=4, s=7)


@case("perceiver", "self_one_input")
def perceiver_self(d):
    return perceiver_case(d, dim=8, heads=2, t=5)


@case("perceiver", "latents_no_bias_causal")
def perceiver_latents(d):
    # a short latent array (T < S) with the bottom-right aligned causal mask, no biases
    return perceiver_case(d, dim=8, heads=4, t=3, s=9, bias=False, causal=True)


@case("perceiver", "kv_padding")
def perceiver_padding(d):
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[1, 3:] = False
    return perceiver_case(d, dim=8, heads=2, t=4, s=6, keep=keep)


@case("perceiver", "mask_rank4_fully_masked_row")
def perceiver_mask4(d):
    keep = d.keep(2, 2, 3, 5)
    keep[..., 0] = True
    keep[0, 1, 2, :] = False
    return perceiver_case(d, dim=8, heads=2, t=3, s=5, keep=keep)
