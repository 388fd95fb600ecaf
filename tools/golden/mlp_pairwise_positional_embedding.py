"""Golden cases of mlp_pairwise_positional_embedding (Swin-V2's MlpPairwisePositionalEmbedding, spec §4.7):
the log-spaced coordinate table, the reference's relative index and the raster-correct one, the MLP with
torch's linear algebra, 16*sigmoid, the zero padding of leading tokens, and the absolute mode."""

import math

import torch

from common import Case, case


def coords_table(wh, ww, sy, sx):
    dy = torch.arange(-wh + 1, wh, dtype=torch.float64) * 8 / (sy - 1)
    dx = torch.arange(-ww + 1, ww, dtype=torch.float64) * 8 / (sx - 1)
    grid = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1).reshape(-1, 2)
    return torch.sign(grid) * torch.log2(1 + grid.abs()) / 3


def reference_index(wh, ww):
    p = torch.arange(wh * ww)
    a, b = p % wh, p // wh
    return (a[:, None] - a[None, :] + wh - 1) + (b[:, None] - b[None, :] + ww - 1) * (2 * wh - 1)


def raster_index(wh, ww):
    p = torch.arange(wh * ww)
    y, x = p // ww, p % ww
    return (y[:, None] - y[None, :] + wh - 1) * (2 * ww - 1) + (x[:, None] - x[None, :] + ww - 1)


def relative_case(d, heads, wh, ww, pad, hidden, mode, attn_height=-1, attn_width=-1, pos_scale=None):
    n = wh * ww
    nq = n + pad
    sy, sx = (wh, ww) if pos_scale is None else pos_scale
    t = coords_table(wh, ww, sy, sx)
    idx = reference_index(wh, ww) if mode == "reference" else raster_index(wh, ww)
    hw, hb, out = d.uniform(2, hidden), d.uniform(hidden, scale=0.5), d.uniform(hidden, heads)
    e = torch.relu(t @ hw + hb) @ out  # [R, heads]
    g = 16 * torch.sigmoid(e[idx])  # [N, N, heads]
    g = torch.nn.functional.pad(g.permute(2, 0, 1), (pad, 0, pad, 0))  # [heads, Nq, Nq]
    x = d.uniform(2, heads, nq, nq)
    config = {"input_shape": [heads, nq, nq], "hidden_dim": hidden, "relative_index": mode}
    if attn_height > 0:
        config["attn_height"] = attn_height
    if attn_width > 0:
        config["attn_width"] = attn_width
    if pos_scale is not None:
        config["pos_scale"] = list(pos_scale)
    return Case({"input/x": x, "weights/hidden_weight": hw, "weights/hidden_bias": hb, "weights/out": out,
                 "expected/relative_coords_table": t, "expected/index": idx.to(torch.float64),
                 "expected/attention_bias": g, "expected/output": x + g}, config)


@case("mlp_pairwise_positional_embedding", "reference_3x4_cls")
def reference_3x4_cls(d):
    return relative_case(d, 2, 3, 4, 1, 8, "reference", attn_height=3, attn_width=4)


@case("mlp_pairwise_positional_embedding", "raster_3x4_pos_scale")
def raster_3x4_pos_scale(d):
    return relative_case(d, 3, 3, 4, 0, 6, "raster", attn_height=3, pos_scale=(5, 7))


@case("mlp_pairwise_positional_embedding", "reference_4x4")
def reference_4x4(d):
    return relative_case(d, 2, 4, 4, 0, 5, "reference")


@case("mlp_pairwise_positional_embedding", "absolute_5x6")
def absolute_5x6(d):
    h, w, c, hidden = 5, 6, 4, 7
    yy = torch.arange(h, dtype=torch.float64) / (h // 2) - 1
    xx = torch.arange(w, dtype=torch.float64) / (w // 2) - 1
    coords = torch.stack(torch.meshgrid(yy, xx, indexing="ij"), dim=-1)  # [H, W, 2]
    hw, hb, out = d.uniform(2, hidden), d.uniform(hidden, scale=0.5), d.uniform(hidden, c)
    x = d.uniform(2, h, w, c)
    pe = torch.relu(coords @ hw + hb) @ out
    return Case({"input/x": x, "weights/hidden_weight": hw, "weights/hidden_bias": hb, "weights/out": out,
                 "expected/output": x + pe},
                {"input_shape": [h, w, c], "hidden_dim": hidden, "use_absolute_pos": True})
