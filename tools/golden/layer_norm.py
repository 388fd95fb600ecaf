"""Golden cases of the layer_norm layer (KCAM's layer_norm helper, spec §3.6): torch.nn.functional.layer_norm over
the channels of [B, H, W, C]."""

import torch.nn.functional as F

from common import Case, case


@case("layer_norm", "center")
def center(d):
    x = d.uniform(2, 3, 5, 8, scale=3.0) + 0.7
    gamma, beta = d.uniform(8) + 1.0, d.uniform(8)
    return Case({"input/x": x, "weights/ln/gamma": gamma, "weights/ln/beta": beta,
                 "expected/output": F.layer_norm(x, (8,), gamma, beta, eps=1e-5)}, {"channels": 8})


@case("layer_norm", "no_center_eps1e-6")
def no_center(d):
    x = d.uniform(1, 4, 3, 5, scale=2.0)
    gamma = d.uniform(5) + 1.0
    return Case({"input/x": x, "weights/ln/gamma": gamma,
                 "expected/output": F.layer_norm(x, (5,), gamma, None, eps=1e-6)},
                {"channels": 5, "center": False, "epsilon": 1e-6, "axis": -1})
