"""Golden cases of torch.nn.MultiheadAttention loaded into multi_head, self_attention and cross_attention
through the interop mapping (attn/io/torch.hpp; tests/io/test_golden.cpp)."""

import torch

from common import Case, as_float, case


def torch_mha_case(d, e, heads, t, s=None, kdim=None, bias=True, padding=None, prefix="attn."):
    """Runs torch.nn.MultiheadAttention itself (float64) on rounded inputs and parameters."""
    b = 2
    cross = s is not None
    s = t if s is None else s
    kdim = e if kdim is None else kdim
    m = torch.nn.MultiheadAttention(e, heads, bias=bias, batch_first=True, kdim=kdim, vdim=kdim,
                                    dtype=torch.float64)
    m.eval()
    state = {}
    key = prefix if prefix.endswith(".") or not prefix else prefix + "."
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(d.uniform(*p.shape, scale=0.5))
            state[key + name] = p.detach().clone()
    x = d.uniform(b, t, e)
    ctx = d.uniform(b, s, kdim) if cross else x
    keep = None
    if padding is not None:
        keep = torch.ones(b, s, dtype=torch.bool)
        keep[1, s - padding:] = False
    with torch.no_grad():
        out, w = m(x, ctx, ctx, key_padding_mask=None if keep is None else ~keep, need_weights=True,
                   average_attn_weights=False)
    tensors = dict(state)
    tensors["input/x"] = x
    if cross:
        tensors["input/context"] = ctx
    if keep is not None:
        tensors["input/key_padding"] = as_float(keep)
    tensors["expected/output"] = out
    tensors["expected/weights"] = w
    config = {"embed_dim": e, "num_heads": heads, "use_bias": bias}
    if cross:
        config["context_dim"] = kdim
    return Case(tensors, config, meta={"torch_prefix": prefix})


@case("torch_mha", "self_bias_padding")
def mha_self(d):
    return torch_mha_case(d, e=8, heads=2, t=5, padding=2)


@case("torch_mha", "self_no_bias")
def mha_self_no_bias(d):
    return torch_mha_case(d, e=12, heads=3, t=4, bias=False, prefix="encoder.layers.0.self_attn")


@case("torch_mha", "cross_same_dim")
def mha_cross(d):
    return torch_mha_case(d, e=8, heads=4, t=3, s=6)


@case("torch_mha", "cross_kdim_padding")
def mha_cross_kdim(d):
    return torch_mha_case(d, e=8, heads=2, t=4, s=6, kdim=5, padding=3)
