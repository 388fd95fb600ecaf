"""Golden cases of the anti_alias_downsample layer (KCAM's anti_alias_downsample, spec §3.2, Appendix B.7): a
depthwise torch.nn.functional.conv2d (groups = C) with the binomial kernel, TensorFlow 'same' padding by F.pad
(extra row/column at the bottom/right). The kernel is the layer's own initial value, so the files store none:
the layer is checked with its fixed filter."""

import math

import torch
import torch.nn.functional as F

from common import Case, case


def _pads(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _blur(x, k, s):
    b = torch.tensor([math.comb(k - 1, i) for i in range(k)], dtype=torch.float64) / 2 ** (k - 1)
    c = x.shape[-1]
    w = torch.outer(b, b)[None, None].repeat(c, 1, 1, 1)  # [C, 1, k, k]
    t, bo = _pads(x.shape[1], k, s)
    l, r = _pads(x.shape[2], k, s)
    z = F.pad(x.permute(0, 3, 1, 2), (l, r, t, bo))
    return F.conv2d(z, w, stride=s, groups=c).permute(0, 2, 3, 1)


@case("anti_alias_downsample", "k3_s2_even")
def k3(d):
    x = d.uniform(2, 8, 6, 5, scale=2.0)
    return Case({"input/x": x, "expected/output": _blur(x, 3, 2)}, {"channels": 5})


@case("anti_alias_downsample", "k5_s2_odd")
def k5(d):
    x = d.uniform(1, 7, 9, 3, scale=2.0)
    return Case({"input/x": x, "expected/output": _blur(x, 5, 2)}, {"channels": 3, "kernel_size": 5})


@case("anti_alias_downsample", "k4_s3")
def k4(d):
    x = d.uniform(1, 10, 8, 4, scale=2.0)
    return Case({"input/x": x, "expected/output": _blur(x, 4, 3)},
                {"channels": 4, "kernel_size": 4, "strides": 3, "padding": "SAME"})
