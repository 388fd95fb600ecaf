"""Golden cases of conv_relative_positional_encoding (CoaT's ConvRelativePositionalEncoding, spec §4.3):
the values' image tokens as [B, H, W, h*d], cut into the head splits' channel chunks, each through
torch's depthwise conv2d (groups = channels, zero padding k // 2), times the queries; a zero class-token
row first."""

import torch

from common import Case, case
from conv_positional_encoding import depthwise


def crpe_case(d, h, w, dk, splits, kernels, input_height=-1):
    heads = sum(splits)
    n = h * w
    q, v = d.uniform(2, heads, 1 + n, dk), d.uniform(2, heads, 1 + n, dk)
    img = v[:, :, 1:].permute(0, 2, 1, 3).reshape(2, h, w, heads * dk)
    tensors = {"input/query": q, "input/value": v}
    chunks, c0 = [], 0
    for i, (s, k) in enumerate(zip(splits, kernels)):
        kernel, bias = d.uniform(k, k, s * dk, 1), d.uniform(s * dk)
        tensors[f"weights/depth_conv_{i + 1}/depthwise_kernel"] = kernel
        tensors[f"weights/depth_conv_{i + 1}/bias"] = bias
        chunks.append(depthwise(img[..., c0:c0 + s * dk], kernel, bias))
        c0 += s * dk
    conv_v = torch.cat(chunks, dim=-1).reshape(2, n, heads, dk).permute(0, 2, 1, 3)
    e = q[:, :, 1:] * conv_v
    tensors["expected/output"] = torch.nn.functional.pad(e, (0, 0, 1, 0))
    config = {"key_dim": dk, "head_splits": list(splits), "head_kernel_size": list(kernels)}
    if input_height > 0:
        config["input_height"] = input_height
    return Case(tensors, config)


@case("conv_relative_positional_encoding", "default_splits")
def default_splits(d):
    return crpe_case(d, 4, 4, 3, [2, 3, 3], [3, 5, 7])


@case("conv_relative_positional_encoding", "rect_two_splits")
def rect_two_splits(d):
    return crpe_case(d, 3, 5, 2, [1, 2], [5, 3], input_height=3)
