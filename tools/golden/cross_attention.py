"""Golden cases of the cross_attention layer: queries from x, keys and values from a context of another
length and width, in attn's weight names (Keras layout [in, out])."""

import torch

from common import case
from self_attention import projected_case


@case("cross_attention", "context_dim_output_projection")
def cross_context_dim(d):
    return projected_case(d, e=8, heads=2, t=4, s=6, ctx_dim=5, output_projection=True)


@case("cross_attention", "unscaled_seed")
def cross_unscaled(d):
    # scale = 1.0 reproduces the seed's unscaled CrossAttention (one head, no output projection)
    return projected_case(d, e=6, heads=1, t=3, s=5, ctx_dim=4, scale=1.0)


@case("cross_attention", "key_padding_no_bias")
def cross_padding(d):
    keep = torch.ones(2, 7, dtype=torch.bool)
    keep[0, 5:] = False
    return projected_case(d, e=12, heads=3, t=4, s=7, bias=False, output_projection=True, keep=keep)


@case("cross_attention", "mask_rank4_fully_masked_row")
def cross_mask4(d):
    keep = d.keep(2, 2, 3, 6)
    keep[..., 0] = True
    keep[1, 0, 1, :] = False
    return projected_case(d, e=8, heads=2, t=3, s=6, scale=0.4, keep=keep)
