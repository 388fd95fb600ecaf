"""Golden cases of the activation_by_name layer (KCAM's activation_by_name, spec §3.1): torch.nn.functional
activations on [B, H, W, C] inputs; prelu's alpha [1, 1, C] and star_relu's scalar gain and bias as weights."""

import torch
import torch.nn.functional as F

from common import Case, case


def _x(d, c):
    x = d.uniform(2, 3, 4, c, scale=5.0)
    grid = torch.tensor([-5, -3, -1, -0.5, 0, 0.5, 1, 3, 5], dtype=torch.float64)
    x.view(-1)[:9] = grid
    return x


PLAIN = {
    "gelu": F.gelu,
    "gelu_app": lambda x: F.gelu(x, approximate="tanh"),
    "leaky_relu": lambda x: F.leaky_relu(x, 0.3),
    "leaky_relu_001": lambda x: F.leaky_relu(x, 0.01),
    "hard_sigmoid": lambda x: torch.clamp(0.2 * x + 0.5, 0, 1),
    "hard_swish": F.hardswish,
    "swish": F.silu,
    "softmax": lambda x: torch.softmax(x, dim=-1),
}
NAMES = {"gelu_app": "gelu/app", "leaky_relu_001": "leaky_relu/0.01", "hard_swish": "Hard_Swish"}


def _plain(key):
    def fn(d):
        x = _x(d, 5)
        return Case({"input/x": x, "expected/output": PLAIN[key](x)}, {"activation": NAMES.get(key, key)})
    return fn


for _key in PLAIN:
    case("activation_by_name", _key)(_plain(_key))


@case("activation_by_name", "prelu")
def prelu(d):
    x = _x(d, 6)
    alpha = d.uniform(1, 1, 6, scale=0.5)
    return Case({"input/x": x, "weights/prelu/alpha": alpha, "expected/output": torch.where(x >= 0, x, alpha * x)},
                {"activation": "prelu", "channels": 6})


@case("activation_by_name", "star_relu")
def star_relu(d):
    x = _x(d, 4)
    gain, bias = d.uniform(1)[0] + 1.5, d.uniform(1)[0]
    return Case({"input/x": x, "weights/star_relu/gain": gain, "weights/star_relu/bias": bias,
                 "expected/output": gain * torch.relu(x) ** 2 + bias}, {"activation": "star_relu"})
