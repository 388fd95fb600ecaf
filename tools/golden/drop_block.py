"""Golden cases of the drop_block layer (KCAM's drop_block, spec §3.5): torch.nn.functional.dropout at inference
(training=False), the identity."""

import torch.nn.functional as F

from common import Case, case


@case("drop_block", "rate_0.3")
def rate(d):
    x = d.uniform(2, 3, 4, 5, scale=2.0)
    return Case({"input/x": x, "expected/output": F.dropout(x, 0.3, training=False)}, {"drop_rate": 0.3})
