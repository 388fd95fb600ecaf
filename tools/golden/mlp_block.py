"""Golden cases of the mlp_block layer (KCAM's mlp_mixer.mlp_block, spec §3.9): torch.nn.functional.linear or 1x1
conv2d projections with the activation between them, on tokens [B, N, C] and images [B, H, W, C]."""

import torch
import torch.nn.functional as F

from common import Case, case


@case("mlp_block", "dense_gelu_tokens")
def dense(d):
    x = d.uniform(2, 9, 6, scale=2.0)
    k0, b0, k1, b1 = d.uniform(6, 12), d.uniform(12), d.uniform(12, 6), d.uniform(6)
    y = F.linear(F.gelu(F.linear(x, k0.t(), b0)), k1.t(), b1)
    return Case({"input/x": x, "weights/Dense_0/kernel": k0, "weights/Dense_0/bias": b0, "weights/Dense_1/kernel": k1,
                 "weights/Dense_1/bias": b1, "expected/output": y}, {"channels": 6, "hidden_dim": 12})


@case("mlp_block", "conv_swish_out5_no_bias_image")
def conv(d):
    x = d.uniform(1, 3, 4, 4, scale=2.0)
    k0, k1 = d.uniform(1, 1, 4, 7), d.uniform(1, 1, 7, 5)
    z = F.conv2d(x.permute(0, 3, 1, 2), k0.permute(3, 2, 0, 1))
    z = F.conv2d(F.silu(z), k1.permute(3, 2, 0, 1)).permute(0, 2, 3, 1)
    return Case({"input/x": x, "weights/Conv_0/kernel": k0, "weights/Conv_1/kernel": k1, "expected/output": z},
                {"channels": 4, "hidden_dim": 7, "output_channel": 5, "use_conv": True, "use_bias": False,
                 "activation": "swish", "drop_rate": 0.1})
