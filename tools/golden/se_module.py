"""Golden cases of the se_module layer (KCAM's se_module, spec §3.7): adaptive_avg_pool2d, 1x1 conv2d (or linear)
projections and activations from torch.nn.functional; the bottleneck width from make_divisible."""

import torch
import torch.nn.functional as F

from common import Case, case


def make_divisible(v, divisor=4, min_value=None, limit_round_down=0.9):
    m = divisor if min_value is None else min_value
    nv = max(m, int(v + divisor / 2) // divisor * divisor)
    return nv + divisor if nv < limit_round_down * v else nv


def _se(x, k1, b1, k2, b2, hidden, output, conv):
    z = x.permute(0, 3, 1, 2)
    s = F.adaptive_avg_pool2d(z, 1)
    if conv:
        s = F.conv2d(s, k1.permute(3, 2, 0, 1), b1)
        s = hidden(s)
        s = F.conv2d(s, k2.permute(3, 2, 0, 1), b2)
        s = output(s)
    else:
        s = s.flatten(1)
        s = output(F.linear(hidden(F.linear(s, k1.t(), b1)), k2.t(), b2))[:, :, None, None]
    return (z * s).permute(0, 2, 3, 1)


@case("se_module", "conv_relu_sigmoid_c40")
def conv_default(d):
    c = 40
    r = make_divisible(c * 0.25, 8)  # 16: rounding 10 down to 8 loses more than 10 %
    x = d.uniform(2, 3, 4, c, scale=2.0)
    k1, b1, k2, b2 = d.uniform(1, 1, c, r), d.uniform(r), d.uniform(1, 1, r, c), d.uniform(c)
    return Case({"input/x": x, "weights/1_conv/kernel": k1, "weights/1_conv/bias": b1, "weights/2_conv/kernel": k2,
                 "weights/2_conv/bias": b2, "expected/output": _se(x, k1, b1, k2, b2, torch.relu, torch.sigmoid, True)},
                {"channels": c}, meta={"reduction": r})


@case("se_module", "dense_pair_no_bias")
def dense_pair(d):
    c = 12
    r = make_divisible(c * 0.5, 4)  # 8 (6 + 2 = 8)
    x = d.uniform(1, 5, 3, c, scale=2.0)
    k1, k2 = d.uniform(c, r), d.uniform(r, c)
    y = _se(x, k1, None, k2, None, F.silu, F.hardsigmoid, False)
    return Case({"input/x": x, "weights/1_dense/kernel": k1, "weights/2_dense/kernel": k2, "expected/output": y},
                {"channels": c, "se_ratio": 0.5, "divisor": 4, "activation": ["swish", "hard_sigmoid_torch"],
                 "use_bias": False, "use_conv": False}, meta={"reduction": r})
