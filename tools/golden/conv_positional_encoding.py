"""Golden cases of conv_positional_encoding (CoaT's ConvPositionalEncoding, spec §4.2): the class token
passed through, the image tokens plus torch's depthwise conv2d (groups = C, zero padding k // 2) of
them; the Keras kernel [k, k, C, 1] is torch's [C, 1, k, k]."""

import torch

from common import Case, case


def depthwise(img, kernel, bias):
    """img [B, H, W, C], Keras depthwise kernel [k, k, C, 1], bias [C] -> [B, H, W, C] (same size)."""
    k, c = kernel.shape[0], kernel.shape[2]
    y = torch.nn.functional.conv2d(img.permute(0, 3, 1, 2), kernel.permute(2, 3, 0, 1), bias, padding=k // 2,
                                   groups=c)
    return y.permute(0, 2, 3, 1)


def cpe_case(d, h, w, c, k, input_height=-1):
    x = d.uniform(2, 1 + h * w, c)
    kernel, bias = d.uniform(k, k, c, 1), d.uniform(c)
    img = x[:, 1:].reshape(2, h, w, c)
    y = torch.cat([x[:, :1], (depthwise(img, kernel, bias) + img).reshape(2, h * w, c)], dim=1)
    config = {"channels": c, "kernel_size": k}
    if input_height > 0:
        config["input_height"] = input_height
    return Case({"input/x": x, "weights/depth_conv/depthwise_kernel": kernel, "weights/depth_conv/bias": bias,
                 "expected/output": y}, config)


@case("conv_positional_encoding", "square_k3")
def square_k3(d):
    return cpe_case(d, 4, 4, 6, 3)


@case("conv_positional_encoding", "rect_k5")
def rect_k5(d):
    return cpe_case(d, 3, 5, 4, 5, input_height=3)
