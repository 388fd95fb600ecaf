"""The data of examples/encoder.cpp: a PyTorch nn.TransformerEncoderLayer (pre-norm, GELU, batch
first, no dropout) run on a sequence that repeats a few token embeddings, so that the attention maps
the example draws have a visible structure (every query attends alike to the copies of a token)."""

import torch

from common import Case, case


@case("example_encoder", "pattern", dtypes=("f32",))
def encoder_pattern(d):
    e, heads, ff, b, t, period = 32, 4, 64, 2, 24, 6
    m = torch.nn.TransformerEncoderLayer(e, heads, dim_feedforward=ff, dropout=0.0, activation="gelu",
                                         batch_first=True, norm_first=True, dtype=torch.float64)
    m.eval()
    state = {}
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("norm"):  # LayerNorm: gamma near 1, beta near 0
                p.copy_((1.0 if name.endswith("weight") else 0.0) + d.uniform(*p.shape, scale=0.1))
            else:  # projections a little larger than the default init, so the maps are not flat
                p.copy_(d.uniform(*p.shape, scale=0.6))
            state["layer." + name] = p.detach().clone()
    tokens = d.uniform(b, period, e, scale=2.0)
    x = tokens.repeat(1, t // period, 1) + d.uniform(b, t, e, scale=0.01)
    with torch.no_grad():
        out = m(x)
    tensors = dict(state)
    tensors["input/x"] = x
    tensors["expected/output"] = out
    config = {"d_model": e, "nhead": heads, "dim_feedforward": ff, "activation": "gelu", "norm_first": True,
              "layer_norm_eps": 1e-5}
    return Case(tensors, config, meta={"torch_prefix": "layer.", "period": period})
