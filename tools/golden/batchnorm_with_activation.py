"""Golden cases of the batchnorm_with_activation layer (KCAM's batchnorm_with_activation and its EvoNorm branches,
spec §3.3): torch.nn.functional.batch_norm (inference, moving statistics) and activations; EvoNorm S0 / S0a / B0
from torch reductions (torch.var_mean over (H, W, group channels), biased)."""

import torch
import torch.nn.functional as F

from common import Case, case


def _bn_weights(d, c):
    return {"weights/bn/gamma": d.uniform(c) + 1.0, "weights/bn/beta": d.uniform(c),
            "weights/bn/moving_mean": d.uniform(c), "weights/bn/moving_variance": d.uniform(c, scale=0.5) + 1.0}


def _bn(x, w, eps):
    y = F.batch_norm(x.permute(0, 3, 1, 2), w["weights/bn/moving_mean"], w["weights/bn/moving_variance"],
                     w["weights/bn/gamma"], w["weights/bn/beta"], training=False, eps=eps)
    return y.permute(0, 2, 3, 1)


@case("batchnorm_with_activation", "bn_relu")
def bn_relu(d):
    x = d.uniform(2, 4, 5, 6, scale=3.0)
    w = _bn_weights(d, 6)
    return Case({"input/x": x, **w, "expected/output": torch.relu(_bn(x, w, 1e-5))}, {"channels": 6, "activation": "relu"})


@case("batchnorm_with_activation", "act_first_swish_eps1e-3")
def act_first(d):
    x = d.uniform(1, 3, 4, 5, scale=3.0)
    w = _bn_weights(d, 5)
    return Case({"input/x": x, **w, "expected/output": _bn(F.silu(x), w, 1e-3)},
                {"channels": 5, "activation": "swish", "act_first": True, "epsilon": 1e-3})


@case("batchnorm_with_activation", "bn_prelu")
def bn_prelu(d):
    x = d.uniform(2, 3, 3, 4, scale=3.0)
    w = _bn_weights(d, 4)
    alpha = d.uniform(1, 1, 4, scale=0.5)
    z = _bn(x, w, 1e-5)
    return Case({"input/x": x, **w, "weights/prelu/alpha": alpha, "expected/output": torch.where(z >= 0, z, alpha * z)},
                {"channels": 4, "activation": "prelu"})


def _evo_weights(d, c, vv, var):
    s = (1, 1, 1, c)
    w = {"weights/evo_norm/gamma": d.uniform(*s) + 1.0, "weights/evo_norm/beta": d.uniform(*s)}
    if vv:
        w["weights/evo_norm/vv"] = d.uniform(*s) + 1.0
    if var:
        w["weights/evo_norm/moving_variance"] = d.uniform(*s, scale=0.5) + 1.0
    return w


def _group_std(x, groups, eps):
    b, h, wd, c = x.shape
    z = x.reshape(b, h, wd, groups, c // groups)
    var = z.var(dim=(1, 2, 4), unbiased=False, keepdim=True)
    return torch.sqrt(var + eps).expand(b, h, wd, groups, c // groups).reshape(b, h, wd, c)


@case("batchnorm_with_activation", "evo_s0_groups_reduced")
def evo_s0(d):
    # C = 10, group size 3: 10 // 3 = 3 groups, not a divisor of 10 -> 2 groups of 5
    x = d.uniform(2, 3, 4, 10, scale=2.0) + 0.3
    w = _evo_weights(d, 10, True, False)
    g, b, vv = w["weights/evo_norm/gamma"], w["weights/evo_norm/beta"], w["weights/evo_norm/vv"]
    y = x * torch.sigmoid(vv * x) / _group_std(x, 2, 1e-5) * g + b
    return Case({"input/x": x, **w, "expected/output": y},
                {"channels": 10, "activation": "relu", "use_evo_norm": True, "evo_norm_group_size": 3})


@case("batchnorm_with_activation", "evo_s0a")
def evo_s0a(d):
    x = d.uniform(1, 4, 3, 8, scale=2.0)
    w = _evo_weights(d, 8, False, False)
    g, b = w["weights/evo_norm/gamma"], w["weights/evo_norm/beta"]
    y = x / _group_std(x, 2, 1e-5) * g + b
    return Case({"input/x": x, **w, "expected/output": y},
                {"channels": 8, "use_evo_norm": True, "evo_norm_group_size": 4})


@case("batchnorm_with_activation", "evo_b0")
def evo_b0(d):
    x = d.uniform(2, 3, 5, 6, scale=2.0)
    w = _evo_weights(d, 6, True, True)
    g, b, vv, mv = (w["weights/evo_norm/" + k] for k in ("gamma", "beta", "vv", "moving_variance"))
    istd = torch.sqrt(x.var(dim=(1, 2), unbiased=False, keepdim=True) + 1e-5)
    y = x / torch.maximum(torch.sqrt(mv + 1e-5), vv * x + istd) * g + b
    return Case({"input/x": x, **w, "expected/output": y}, {"channels": 6, "activation": "swish", "use_evo_norm": True})


@case("batchnorm_with_activation", "evo_b0_no_nonlinearity")
def evo_plain(d):
    x = d.uniform(1, 2, 3, 4, scale=2.0)
    w = _evo_weights(d, 4, False, True)
    y = x * w["weights/evo_norm/gamma"] + w["weights/evo_norm/beta"]
    return Case({"input/x": x, **w, "expected/output": y}, {"channels": 4, "use_evo_norm": True})
