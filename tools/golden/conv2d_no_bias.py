"""Golden cases of the conv2d_no_bias layer (KCAM's conv2d_no_bias, spec §3.4): torch.nn.functional.conv2d on NCHW
with F.pad expressing the reference's padding (torch-same floor(k/2) on every side, TensorFlow 'same' with the
extra row/column at the bottom/right, explicit symmetric pads). Kernels in Keras layout [kh, kw, C/groups, filters]."""

import torch.nn.functional as F

from common import Case, case


def _tf_same(n, k, s, r):
    e = r * (k - 1) + 1
    out = -(-n // s)
    total = max((out - 1) * s + e - n, 0)
    return total // 2, total - total // 2


def _conv(x, kernel, bias, strides, dilation, groups, pads):
    t, b, l, r = pads
    z = F.pad(x.permute(0, 3, 1, 2), (l, r, t, b))
    y = F.conv2d(z, kernel.permute(3, 2, 0, 1), bias, stride=strides, dilation=dilation, groups=groups)
    return y.permute(0, 2, 3, 1)


def _case(d, shape, filters, k, strides=(1, 1), dilation=(1, 1), groups=1, padding="valid", torch_pad=True,
          bias=False):
    b_, h, w, c = shape
    x = d.uniform(*shape, scale=2.0)
    kernel = d.uniform(k[0], k[1], c // groups, filters)
    tensors = {"input/x": x, "weights/conv/kernel": kernel}
    b = None
    if bias:
        b = d.uniform(filters)
        tensors["weights/conv/bias"] = b
    if padding == "same" and torch_pad:
        pads = (k[0] // 2, k[0] // 2, k[1] // 2, k[1] // 2)
    elif padding == "same":
        pads = _tf_same(h, k[0], strides[0], dilation[0]) + _tf_same(w, k[1], strides[1], dilation[1])
    elif padding == "valid":
        pads = (0, 0, 0, 0)
    else:
        pads = (padding[0], padding[0], padding[1], padding[1])
    tensors["expected/output"] = _conv(x, kernel, b, strides, dilation, groups, pads)
    config = {"channels": c, "filters": filters, "kernel_size": list(k), "strides": list(strides), "padding": padding,
              "use_bias": bias, "groups": groups, "use_torch_padding": torch_pad, "dilation_rate": list(dilation)}
    return Case(tensors, config)


@case("conv2d_no_bias", "torch_same_k3_s2_bias")
def c1(d):
    return _case(d, (2, 7, 8, 6), 5, (3, 3), strides=(2, 2), padding="same", bias=True)


@case("conv2d_no_bias", "torch_same_even_k4")
def c2(d):
    return _case(d, (1, 5, 6, 4), 3, (4, 2), padding="same")


@case("conv2d_no_bias", "tf_same_k3_s2_groups2")
def c3(d):
    return _case(d, (2, 8, 7, 6), 4, (3, 3), strides=(2, 2), groups=2, padding="same", torch_pad=False)


@case("conv2d_no_bias", "explicit_pads_dilated")
def c4(d):
    return _case(d, (1, 7, 9, 4), 6, (3, 3), dilation=(2, 2), padding=[1, 2], bias=True)


@case("conv2d_no_bias", "torch_same_dilated_shrinks")
def c5(d):
    return _case(d, (1, 7, 9, 3), 2, (3, 3), dilation=(2, 2), padding="same")


@case("conv2d_no_bias", "valid_1x1_depthwise_groups")
def c6(d):
    return _case(d, (2, 4, 5, 6), 12, (1, 1), groups=6)
