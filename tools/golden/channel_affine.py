"""Golden cases of the channel_affine layer (KCAM's ChannelAffine, spec §3.8): torch.addcmul / mul broadcasting the
per-channel weight and bias over [B, H, W, C]."""

import torch

from common import Case, case


@case("channel_affine", "bias")
def bias(d):
    x = d.uniform(2, 3, 4, 6, scale=3.0)
    w, b = d.uniform(6), d.uniform(6)
    return Case({"input/x": x, "weights/weight": w, "weights/bias": b, "expected/output": torch.addcmul(b, x, w)},
                {"channels": 6})


@case("channel_affine", "layer_scale")
def layer_scale(d):
    x = d.uniform(1, 5, 2, 4, scale=3.0)
    w = d.uniform(4, scale=1e-2)
    return Case({"input/x": x, "weights/weight": w, "expected/output": torch.mul(x, w)},
                {"channels": 4, "use_bias": False, "weight_init_value": 1e-5, "axis": 3})
