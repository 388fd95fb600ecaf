"""Golden cases of multi_head_relative_positional_kernel_bias (NAT's MultiHeadRelativePositionalKernelBias,
spec §4.5): the index built as the reference builds it (pad_bias per axis, the (2k-1)^2 offsets, rows
reversed), the gather of the table and the broadcast add with torch operators, heads last and first,
with and without the m axis, with dilation."""

import math

import torch

from common import Case, case


def pad_bias(n, k, r):
    half = k // 2
    seq = []
    for v in range(half):
        seq += [v] * r
    seq += [half] * (n - 2 * r * half)
    for v in range(half + 1, k):
        seq += [v] * r
    return torch.tensor(seq)


def nat_index(h, w, k, rh, rw):
    p = 2 * k - 1
    bh, bw = pad_bias(h, k, rh), pad_bias(w, k, rw)
    a = torch.arange(k)
    rows = (bh[:, None] + a[None, :]) * p  # [H, k]
    cols = bw[:, None] + a[None, :]  # [W, k]
    j0 = rows[:, None, :, None] + cols[None, :, None, :]  # [H, W, k, k]
    return j0.reshape(h * w, k * k).flip(0)


def forward_case(d, shape, heads_first, input_height=-1, dilation=(1, 1)):
    n, heads = (shape[1], shape[0]) if heads_first else (shape[0], shape[1])
    kk = shape[-1]
    k = int(math.isqrt(kk))
    h = input_height if input_height > 0 else int(math.isqrt(n))
    w = n // h
    idx = nat_index(h, w, k, *dilation)
    table = d.uniform(heads, (2 * k - 1) ** 2)
    g = table[:, idx]  # [heads, N, kk]
    if not heads_first:
        g = g.transpose(0, 1)  # [N, heads, kk]
    if len(shape) == 4:
        g = g.unsqueeze(2)  # the m axis
    x = d.uniform(2, *shape)
    config = {"input_shape": list(shape), "is_heads_first": heads_first}
    if input_height > 0:
        config["input_height"] = input_height
    if dilation != (1, 1):
        config["dilation_rate"] = list(dilation)
    return Case({"input/x": x, "weights/positional_embedding": table, "expected/index": idx.to(torch.float64),
                 "expected/attention_bias": table[:, idx], "expected/output": x + g}, config)


@case("multi_head_relative_positional_kernel_bias", "heads_last_m3")
def heads_last_m3(d):
    return forward_case(d, (20, 2, 3, 9), False, input_height=4)


@case("multi_head_relative_positional_kernel_bias", "heads_first_dilated")
def heads_first_dilated(d):
    return forward_case(d, (3, 30, 9), True, input_height=5, dilation=(2, 1))


@case("multi_head_relative_positional_kernel_bias", "k5_dilated_square")
def k5_dilated_square(d):
    return forward_case(d, (64, 1, 1, 25), False, dilation=(2, 2))
