"""Golden cases of the window layer: Swin's window attention written the way Swin's reference code does
it (fused QKV, Q scaled first, the relative-position index from a meshgrid, the bias gathered from the
[(2w-1)^2, heads] table, the per-window additive mask, softmax, P·V), and for the feature-map entry the
whole block: zero padding at the bottom/right, torch.roll by -shift, the label-map mask (-100), window
partition and reverse as views/permutes, the roll back and the crop."""

import torch

from common import Case, case, linear


def relative_position_index(w):
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij"))  # [2, w, w]
    flat = coords.flatten(1)  # [2, N]
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()  # [N, N, 2]
    rel[:, :, 0] += w - 1
    rel[:, :, 1] += w - 1
    rel[:, :, 0] *= 2 * w - 1
    return rel.sum(-1)  # [N, N]


def window_attention(x, wqkv, bqkv, wp, bp, table, w, heads, scale=None, mask=None):
    bw, n, c = x.shape
    d = c // heads
    qkv = linear(x, wqkv, bqkv).reshape(bw, n, 3, heads, d).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    q = q * (d ** -0.5 if scale is None else scale)
    attn = q @ k.transpose(-2, -1)
    bias = table[relative_position_index(w).reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)
    attn = attn + bias.unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        attn = attn.view(bw // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, heads, n, n)
    attn = torch.softmax(attn, dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(bw, n, c)
    return linear(out, wp, bp), attn


def window_partition(x, w):
    b, h, wd, c = x.shape
    return x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w, w, c)


def window_reverse(windows, w, h, wd):
    b = windows.shape[0] // ((h // w) * (wd // w))
    x = windows.view(b, h // w, wd // w, w, w, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, wd, -1)


def shifted_mask(hp, wp, w, shift):
    img = torch.zeros(1, hp, wp, 1, dtype=torch.float64)
    cnt = 0
    for hs in (slice(0, -w), slice(-w, -shift), slice(-shift, None)):
        for ws in (slice(0, -w), slice(-w, -shift), slice(-shift, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    mw = window_partition(img, w).view(-1, w * w)
    m = mw.unsqueeze(1) - mw.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


def window_map(x, weights, w, heads, shift, scale=None):
    b, h, wd, c = x.shape
    pad_b, pad_r = (w - h % w) % w, (w - wd % w) % w
    xp = torch.nn.functional.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    hp, wp = h + pad_b, wd + pad_r
    mask = None
    if shift > 0:
        xp = torch.roll(xp, shifts=(-shift, -shift), dims=(1, 2))
        mask = shifted_mask(hp, wp, w, shift)
    windows = window_partition(xp, w).view(-1, w * w, c)
    out, p = window_attention(windows, *weights, w, heads, scale=scale, mask=mask)
    y = window_reverse(out.view(-1, w, w, c), w, hp, wp)
    if shift > 0:
        y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
    return y[:, :h, :wd, :].contiguous(), p


def draw_weights(d, dim, w, heads, qkv_bias=True, proj_bias=True):
    wqkv = d.uniform(dim, 3 * dim, scale=0.5)
    bqkv = d.uniform(3 * dim, scale=0.2) if qkv_bias else None
    wp = d.uniform(dim, dim, scale=0.5)
    bp = d.uniform(dim, scale=0.2) if proj_bias else None
    table = d.uniform((2 * w - 1) ** 2, heads, scale=0.5)
    return wqkv, bqkv, wp, bp, table


def weight_tensors(weights):
    wqkv, bqkv, wp, bp, table = weights
    t = {"weights/qkv/kernel": wqkv}
    if bqkv is not None:
        t["weights/qkv/bias"] = bqkv
    t["weights/proj/kernel"] = wp
    if bp is not None:
        t["weights/proj/bias"] = bp
    t["weights/relative_position_bias_table"] = table
    return t


def windows_case(d, dim, w, heads, windows, qkv_bias=True, proj_bias=True, scale=None):
    x = d.uniform(windows, w * w, dim)
    weights = draw_weights(d, dim, w, heads, qkv_bias, proj_bias)
    y, p = window_attention(x, *weights, w, heads, scale=scale)
    tensors = {"input/x": x, **weight_tensors(weights), "expected/output": y, "expected/weights": p}
    config = {"dim": dim, "window_size": w, "num_heads": heads, "qkv_bias": qkv_bias, "proj_bias": proj_bias,
              "qk_scale": scale}
    return Case(tensors, config, meta={"entry": "windows", "shift_size": 0})


def map_case(d, dim, w, heads, b, h, wd, shift):
    x = d.uniform(b, h, wd, dim)
    weights = draw_weights(d, dim, w, heads)
    y, p = window_map(x, weights, w, heads, shift)
    tensors = {"input/x": x, **weight_tensors(weights), "expected/output": y, "expected/weights": p}
    config = {"dim": dim, "window_size": w, "num_heads": heads}
    return Case(tensors, config, meta={"entry": "map", "shift_size": shift})


@case("window", "windows_w3_heads3")
def windows_basic(d):
    return windows_case(d, dim=12, w=3, heads=3, windows=5)


@case("window", "windows_w2_no_bias_qk_scale")
def windows_no_bias(d):
    return windows_case(d, dim=8, w=2, heads=2, windows=4, qkv_bias=False, proj_bias=False, scale=0.3)


@case("window", "map_7x9_b3_w3_unshifted")
def map_unshifted(d):
    return map_case(d, dim=8, w=3, heads=2, b=3, h=7, wd=9, shift=0)


@case("window", "map_7x9_b3_w3_shift1")
def map_shifted(d):
    return map_case(d, dim=8, w=3, heads=2, b=3, h=7, wd=9, shift=1)


@case("window", "map_5x6_b2_w4_shift2")
def map_shift2(d):
    return map_case(d, dim=6, w=4, heads=3, b=2, h=5, wd=6, shift=2)
