#!/usr/bin/python3
"""Golden data for attn's parity tests, computed with PyTorch operators.

Run by a developer (never by CI) with Debian's python3-torch and python3-numpy:

    /usr/bin/python3 tools/make_golden.py              # every case, into tests/data/
    /usr/bin/python3 tools/make_golden.py --only sdpa  # the cases of one type
    /usr/bin/python3 tools/make_golden.py --list

Each case is one function decorated with @case(type, name): it draws its inputs and weights from a
seeded generator, builds the reference result from torch operators (never from attn), and returns the
tensors to store plus metadata. Every case is written once per dtype as
tests/data/<type>/<name>_<f32|f64>.safetensors. The inputs and weights of the f32 file are rounded to
float32 first and the reference is computed in float64 on the rounded values, so the stored expected
values are the exact answer to the stored inputs (up to one final rounding); the C++ test's tolerance
only has to cover its own arithmetic.

Metadata (safetensors "__metadata__", all strings): type, case, dtype, rtol, atol, generator, torch,
config (a JSON object: the attn layer's parameters, or the function's options) and, per case, a few
more keys documented in the case. Tensor names: "input/..." for inputs, "weights/..." for weights in
attn's names (Keras layout), a torch module prefix for PyTorch state_dict tensors, "expected/..." for
the reference results. Boolean masks are stored as 0/1 in the file's float dtype (1 = attend).

Adding a layer type: write one function per case that returns Case(tensors, config, ...), decorate it,
rerun, and add a TEST_CASE to tests/io/test_golden.cpp. The safetensors writer below is written from the
format description (8-byte little-endian header length, JSON header, raw little-endian data).
"""

import argparse
import json
import math
import pathlib
import struct
import sys
import zlib

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"

DTYPES = {
    "f32": (torch.float32, "F32", "<f4"),
    "f64": (torch.float64, "F64", "<f8"),
}
# element-wise |got - expected| <= atol + rtol * |expected|
TOLERANCES = {"f32": (1e-5, 1e-6), "f64": (1e-12, 1e-13)}


# --------------------------------------------------------------------------------------------------
# safetensors writer


def write_safetensors(path, tensors, metadata):
    """Writes `tensors` (name -> numpy array, float32 or float64) in insertion order."""
    header = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs = []
    offset = 0
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        if array.dtype == np.float32:
            code, raw = "F32", array.astype("<f4").tobytes()
        elif array.dtype == np.float64:
            code, raw = "F64", array.astype("<f8").tobytes()
        else:
            raise TypeError(f"{name}: unsupported dtype {array.dtype}")
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


# --------------------------------------------------------------------------------------------------
# cases

CASES = []


class Case:
    """What a case function returns: tensors (name -> float64 torch tensor, in file order), the
    config JSON object, and optional extra metadata and tolerance overrides {dtype: (rtol, atol)}."""

    def __init__(self, tensors, config, meta=None, tolerances=None):
        self.tensors = tensors
        self.config = config
        self.meta = meta or {}
        self.tolerances = tolerances or {}


def case(type_name, name, dtypes=("f32", "f64")):
    def register(fn):
        CASES.append((type_name, name, dtypes, fn))
        return fn
    return register


class Draw:
    """Seeded draws, rounded to the case's dtype and returned as float64."""

    def __init__(self, seed, dtype):
        self.gen = torch.Generator().manual_seed(seed)
        self.dtype = dtype

    def uniform(self, *shape, scale=1.0):
        x = (torch.rand(*shape, generator=self.gen, dtype=torch.float64) * 2 - 1) * scale
        return x.to(self.dtype).to(torch.float64)

    def keep(self, *shape, p=0.7):
        return torch.rand(*shape, generator=self.gen, dtype=torch.float64) < p


def as_float(mask):
    return mask.to(torch.float64)


# ---- reference building blocks (torch operators only) ----------------------------------------------


def masked_softmax(z, allowed):
    """Row softmax over the last axis where `allowed`; rows with nothing allowed give zeros."""
    z = z.masked_fill(~allowed, float("-inf"))
    p = torch.softmax(z, dim=-1)
    return torch.where(allowed.any(dim=-1, keepdim=True), p, torch.zeros_like(p))


def sdpa_reference(q, k, v, keep=None, bias=None, causal=False, scale=None):
    """softmax(Q Kᵀ·scale + bias, masked) V on [B, H, T, d] (or [B, T, d]); GQA by repeating K/V heads."""
    if q.dim() == 4 and k.shape[1] != q.shape[1]:
        groups = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    z = torch.matmul(q, k.transpose(-1, -2)) * s
    if bias is not None:
        z = z + bias
    allowed = torch.ones(z.shape, dtype=torch.bool)
    if keep is not None:
        allowed = allowed & keep
    if causal:
        t, n = z.shape[-2], z.shape[-1]
        allowed = allowed & torch.ones(t, n, dtype=torch.bool).tril(diagonal=n - t)
    p = masked_softmax(z, allowed)
    return torch.matmul(p, v), p


def linear(x, kernel, bias=None):
    """Keras-layout dense: x · kernel [in, out] + bias."""
    y = torch.matmul(x, kernel)
    return y if bias is None else y + bias


def split_heads(x, heads):
    b, t, f = x.shape
    return x.reshape(b, t, heads, f // heads).transpose(1, 2)


def merge_heads(x):
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def rope_angles(t, rotary, theta):
    i = torch.arange(rotary // 2, dtype=torch.float64)
    omega = theta ** (-2.0 * i / rotary)
    return torch.arange(t, dtype=torch.float64)[:, None] * omega[None, :]  # [T, r/2]


def rope_interleaved(x, rotary, theta):
    """RoPE on [B, H, T, d], pairs (2i, 2i+1) of the first `rotary` features, positions from 0."""
    if rotary == 0:
        return x
    a = rope_angles(x.shape[2], rotary, theta)
    cos, sin = torch.cos(a), torch.sin(a)
    rot = x[..., :rotary]
    even, odd = rot[..., 0::2], rot[..., 1::2]
    out = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
    return torch.cat([out, x[..., rotary:]], dim=-1)


def rope_half_split(x, rotary, theta):
    """RoPE in the "rotate half" form: pairs (i, i + r/2) of the first `rotary` features."""
    if rotary == 0:
        return x
    a = rope_angles(x.shape[2], rotary, theta)
    cos, sin = torch.cos(a).repeat(1, 2), torch.sin(a).repeat(1, 2)
    rot = x[..., :rotary]
    half = rotary // 2
    rotated = torch.cat([-rot[..., half:], rot[..., :half]], dim=-1)
    return torch.cat([rot * cos + rotated * sin, x[..., rotary:]], dim=-1)


def rotary_dim(head_dim, percentage):
    r = int(head_dim * percentage)
    return r - 1 if r % 2 else r


def conv_same(z_nhwc, kernel_hwio, bias):
    """TensorFlow 'same' convolution (stride 1, odd kernel) via torch conv2d with explicit padding."""
    kh, kw = kernel_hwio.shape[0], kernel_hwio.shape[1]
    w = kernel_hwio.permute(3, 2, 0, 1)  # [out, in, kh, kw]
    y = torch.nn.functional.conv2d(z_nhwc.permute(0, 3, 1, 2), w, bias, padding=((kh - 1) // 2, (kw - 1) // 2))
    return y.permute(0, 2, 3, 1)


def channel_gate(x, k1, k2, b1=None, b2=None):
    """CBAM channel gate on [B, H, W, C] -> [B, 1, 1, C]."""
    avg = torch.nn.functional.adaptive_avg_pool2d(x.permute(0, 3, 1, 2), 1).flatten(1)
    mx = torch.nn.functional.adaptive_max_pool2d(x.permute(0, 3, 1, 2), 1).flatten(1)

    def mlp(z):
        return linear(torch.relu(linear(z, k1, b1)), k2, b2)

    g = torch.sigmoid(mlp(avg) + mlp(mx))
    return g[:, None, None, :]


def spatial_gate(x, kernel, bias=None):
    """CBAM spatial gate on [B, H, W, C] -> [B, H, W, 1]."""
    avg = x.mean(dim=-1, keepdim=True)
    mx = x.amax(dim=-1, keepdim=True)
    return torch.sigmoid(conv_same(torch.cat([avg, mx], dim=-1), kernel, bias))


# ---- sdpa (attn::scaled_dot_product_attention / dot_product_attention) -----------------------------


def sdpa_case(d, q_shape, kv_heads=None, s=None, dv=None, keep_shape=None, keep_fn=None, bias_shape=None,
              causal=False, scale=None, function="scaled_dot_product_attention"):
    rank4 = len(q_shape) == 4
    b, t, dk = q_shape[0], q_shape[-2], q_shape[-1]
    s = t if s is None else s
    dv = dk if dv is None else dv
    if rank4:
        h = q_shape[1]
        hkv = h if kv_heads is None else kv_heads
        q = d.uniform(b, h, t, dk)
        k = d.uniform(b, hkv, s, dk)
        v = d.uniform(b, hkv, s, dv)
    else:
        q = d.uniform(b, t, dk)
        k = d.uniform(b, s, dk)
        v = d.uniform(b, s, dv)
    tensors = {"input/q": q, "input/k": k, "input/v": v}
    keep = None
    if keep_shape is not None:
        keep = keep_fn(d, keep_shape) if keep_fn else d.keep(*keep_shape)
        tensors["input/mask"] = as_float(keep)
    bias = None
    if bias_shape is not None:
        bias = d.uniform(*bias_shape, scale=2.0)
        tensors["input/bias"] = bias
    if function == "dot_product_attention":
        out, p = sdpa_reference(q, k, v, scale=1.0)
    else:
        out, p = sdpa_reference(q, k, v, keep=keep, bias=bias, causal=causal, scale=scale)
    tensors["expected/output"] = out
    tensors["expected/weights"] = p
    return Case(tensors, {"function": function, "causal": causal, "scale": scale})


@case("sdpa", "no_mask")
def sdpa_no_mask(d):
    return sdpa_case(d, (2, 3, 5, 4), dv=6)


@case("sdpa", "dot_product_unscaled")
def sdpa_dot_product(d):
    return sdpa_case(d, (2, 2, 4, 3), s=6, function="dot_product_attention")


@case("sdpa", "causal_t_lt_s")
def sdpa_causal_t_lt_s(d):
    return sdpa_case(d, (2, 2, 3, 4), s=7, causal=True)


@case("sdpa", "causal_t_gt_s")
def sdpa_causal_t_gt_s(d):
    # bottom-right alignment: the first T - S query rows see no key and must be zeros
    return sdpa_case(d, (1, 2, 6, 4), s=4, causal=True)


def prefix_padding(d, shape):
    """Key padding [B, 1, 1, S]: item b keeps its first lengths[b] keys."""
    b, s = shape[0], shape[-1]
    lengths = [s - (i * 2) % s for i in range(b)]
    keep = torch.zeros(*shape, dtype=torch.bool)
    for i, n in enumerate(lengths):
        keep[i, ..., :n] = True
    return keep


@case("sdpa", "key_padding")
def sdpa_key_padding(d):
    c = sdpa_case(d, (3, 2, 4, 5), s=6, keep_shape=(3, 1, 1, 6), keep_fn=prefix_padding)
    # the same padding as attn's key_lengths option
    c.meta["key_lengths"] = json.dumps([int(n) for n in c.tensors["input/mask"].sum(dim=-1).flatten().tolist()])
    return c


@case("sdpa", "bool_mask")
def sdpa_bool_mask(d):
    def no_empty_row(d, shape):
        keep = d.keep(*shape)
        keep[..., 0] = True
        return keep
    return sdpa_case(d, (2, 3, 5, 4), s=6, keep_shape=(2, 1, 5, 6), keep_fn=no_empty_row)


@case("sdpa", "additive_mask")
def sdpa_additive(d):
    c = sdpa_case(d, (2, 3, 4, 5), s=5, bias_shape=(3, 4, 5))
    # a few blocked logits (-inf), never a whole row: recompute with them
    bias = c.tensors["input/bias"].clone()
    bias[0, 1, 2] = float("-inf")
    bias[2, 3, 0] = float("-inf")
    bias[1, 0, 4] = -1e9
    t = c.tensors
    out, p = sdpa_reference(t["input/q"], t["input/k"], t["input/v"], bias=bias)
    t["input/bias"], t["expected/output"], t["expected/weights"] = bias, out, p
    return c


@case("sdpa", "additive_and_bool_causal")
def sdpa_additive_bool_causal(d):
    return sdpa_case(d, (2, 2, 5, 4), s=5, keep_shape=(2, 1, 1, 5), bias_shape=(2, 1, 5, 5), causal=True,
                     keep_fn=prefix_padding)


@case("sdpa", "fully_masked_row")
def sdpa_fully_masked(d):
    def with_empty_rows(d, shape):
        keep = d.keep(*shape)
        keep[..., 0] = True
        keep[0, 1, 2, :] = False  # item 0, head 1, query 2 sees nothing
        keep[1, 0, 0, :] = False
        return keep
    return sdpa_case(d, (2, 2, 4, 3), s=5, keep_shape=(2, 2, 4, 5), keep_fn=with_empty_rows)


@case("sdpa", "grouped_query")
def sdpa_gqa(d):
    return sdpa_case(d, (2, 6, 4, 4), kv_heads=2, s=5, dv=3, causal=True)


@case("sdpa", "rank3_scale_mask_bias")
def sdpa_rank3(d):
    def keep3(d, shape):
        keep = d.keep(*shape)
        keep[..., -1] = True
        return keep
    return sdpa_case(d, (2, 4, 5), s=6, dv=3, keep_shape=(2, 4, 6), keep_fn=keep3, bias_shape=(4, 6), scale=0.37)


# ---- torch.nn.MultiheadAttention (self and cross), through the interop mapping ----------------------


def torch_mha_case(d, e, heads, t, s=None, kdim=None, bias=True, padding=None, prefix="attn."):
    """Runs torch.nn.MultiheadAttention itself (float64) on rounded inputs and parameters."""
    b = 2
    cross = s is not None
    s = t if s is None else s
    kdim = e if kdim is None else kdim
    m = torch.nn.MultiheadAttention(e, heads, bias=bias, batch_first=True, kdim=kdim, vdim=kdim,
                                    dtype=torch.float64)
    m.eval()
    state = {}
    key = prefix if prefix.endswith(".") or not prefix else prefix + "."
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(d.uniform(*p.shape, scale=0.5))
            state[key + name] = p.detach().clone()
    x = d.uniform(b, t, e)
    ctx = d.uniform(b, s, kdim) if cross else x
    keep = None
    if padding is not None:
        keep = torch.ones(b, s, dtype=torch.bool)
        keep[1, s - padding:] = False
    with torch.no_grad():
        out, w = m(x, ctx, ctx, key_padding_mask=None if keep is None else ~keep, need_weights=True,
                   average_attn_weights=False)
    tensors = dict(state)
    tensors["input/x"] = x
    if cross:
        tensors["input/context"] = ctx
    if keep is not None:
        tensors["input/key_padding"] = as_float(keep)
    tensors["expected/output"] = out
    tensors["expected/weights"] = w
    config = {"embed_dim": e, "num_heads": heads, "use_bias": bias}
    if cross:
        config["context_dim"] = kdim
    return Case(tensors, config, meta={"torch_prefix": prefix})


@case("torch_mha", "self_bias_padding")
def mha_self(d):
    return torch_mha_case(d, e=8, heads=2, t=5, padding=2)


@case("torch_mha", "self_no_bias")
def mha_self_no_bias(d):
    return torch_mha_case(d, e=12, heads=3, t=4, bias=False, prefix="encoder.layers.0.self_attn")


@case("torch_mha", "cross_same_dim")
def mha_cross(d):
    return torch_mha_case(d, e=8, heads=4, t=3, s=6)


@case("torch_mha", "cross_kdim_padding")
def mha_cross_kdim(d):
    return torch_mha_case(d, e=8, heads=2, t=4, s=6, kdim=5, padding=3)


# ---- multi_head (the reference layout: fused QKV, Keras kernels) -----------------------------------


def multi_head_case(d, e, heads, t, din=None, bias=True, keep=None):
    b = 2
    din = e if din is None else din
    x = d.uniform(b, t, din)
    wqkv = d.uniform(din, 3 * e, scale=0.5)
    wp = d.uniform(e, e, scale=0.5)
    bqkv = d.uniform(3 * e, scale=0.2) if bias else None
    bp = d.uniform(e, scale=0.2) if bias else None
    qkv = linear(x, wqkv, bqkv)
    q, k, v = (split_heads(qkv[..., i * e:(i + 1) * e], heads) for i in range(3))
    allowed = None
    if keep is not None:
        allowed = keep if keep.dim() == 4 else (keep[:, None, None, :] if keep.dim() == 2 else keep[:, None])
    ctx, p = sdpa_reference(q, k, v, keep=allowed)
    y = linear(merge_heads(ctx), wp, bp)
    tensors = {"input/x": x}
    if keep is not None:
        tensors["input/mask"] = as_float(keep)
    tensors["weights/qkv/kernel"] = wqkv
    if bias:
        tensors["weights/qkv/bias"] = bqkv
    tensors["weights/proj/kernel"] = wp
    if bias:
        tensors["weights/proj/bias"] = bp
    tensors["expected/output"] = y
    tensors["expected/weights"] = p
    config = {"embed_dim": e, "num_heads": heads, "use_bias": bias}
    if din != e:
        config["input_dim"] = din
    return Case(tensors, config)


@case("multi_head", "reference_layout")
def mh_basic(d):
    return multi_head_case(d, e=12, heads=3, t=5, din=7)


@case("multi_head", "no_bias")
def mh_no_bias(d):
    return multi_head_case(d, e=8, heads=2, t=6, bias=False)


@case("multi_head", "key_padding")
def mh_padding(d):
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[1, 4:] = False
    return multi_head_case(d, e=8, heads=4, t=6, keep=keep)


@case("multi_head", "mask_rank4_fully_masked_row")
def mh_mask4(d):
    keep = d.keep(2, 2, 5, 5)
    keep[..., 0] = True
    keep[0, 1, 3, :] = False
    return multi_head_case(d, e=8, heads=2, t=5, keep=keep)


# ---- group_query (GQA + RoPE), weights from separate q/k/v/o nn.Linear projections -----------------


def group_query_case(d, d_model, n_head, n_kv, t, pct=1.0, theta=10000.0, bias=False, half_split=False,
                     keep=None, max_seq_len=16, prefix="model.self_attn."):
    b = 2
    hd = d_model // n_head
    r = rotary_dim(hd, pct)
    x = d.uniform(b, t, d_model)
    state = {}
    proj = {}
    for name, out in (("q_proj", n_head * hd), ("k_proj", n_kv * hd), ("v_proj", n_kv * hd), ("o_proj", d_model)):
        w = d.uniform(out, d_model if name != "o_proj" else n_head * hd, scale=0.5)  # nn.Linear [out, in]
        state[f"{prefix}{name}.weight"] = w
        bb = d.uniform(out, scale=0.2) if bias else None
        if bias:
            state[f"{prefix}{name}.bias"] = bb
        proj[name] = (w, bb)

    def lin(z, name):
        w, bb = proj[name]
        return torch.nn.functional.linear(z, w, bb)

    q = split_heads(lin(x, "q_proj"), n_head)
    k = split_heads(lin(x, "k_proj"), n_kv)
    v = split_heads(lin(x, "v_proj"), n_kv)
    rope = rope_half_split if half_split else rope_interleaved
    q, k = rope(q, r, theta), rope(k, r, theta)
    allowed = None
    if keep is not None:
        allowed = keep[:, None] if keep.dim() == 3 else keep
    ctx, p = sdpa_reference(q, k, v, keep=allowed)  # repeats each K/V head n_head / n_kv times
    y = lin(merge_heads(ctx), "o_proj")
    tensors = dict(state)
    tensors["input/x"] = x
    if keep is not None:
        tensors["input/mask"] = as_float(keep)
    tensors["expected/output"] = y
    tensors["expected/weights"] = p
    config = {"d_model": d_model, "n_head": n_head, "n_kv_head": n_kv, "max_seq_len": max_seq_len,
              "rope_percentage": pct, "rope_theta": theta, "use_bias": bias}
    return Case(tensors, config, meta={"torch_prefix": prefix,
                                       "rope_layout": "half_split" if half_split else "interleaved"})


@case("group_query", "rope_gqa")
def gq_basic(d):
    return group_query_case(d, d_model=16, n_head=4, n_kv=2, t=7)


@case("group_query", "rope_partial_mqa_bias")
def gq_partial(d):
    return group_query_case(d, d_model=12, n_head=3, n_kv=1, t=6, pct=0.5, theta=500.0, bias=True)


@case("group_query", "rope_mask_rank3")
def gq_mask(d):
    keep = d.keep(2, 5, 5)
    keep[..., 0] = True
    keep[1, 2, :] = False
    return group_query_case(d, d_model=16, n_head=4, n_kv=4, t=5, keep=keep)


@case("group_query", "rope_half_split")
def gq_half_split(d):
    return group_query_case(d, d_model=16, n_head=4, n_kv=2, t=6, half_split=True)


@case("group_query", "rope_half_split_partial")
def gq_half_split_partial(d):
    return group_query_case(d, d_model=16, n_head=2, n_kv=1, t=5, pct=0.75, half_split=True, bias=True)


# ---- CBAM gates: channel, spatial, cbam -------------------------------------------------------------


@case("channel", "bias")
def channel_bias(d):
    x = d.uniform(2, 5, 4, 8)
    k1, b1 = d.uniform(8, 4), d.uniform(4, scale=0.3)
    k2, b2 = d.uniform(4, 8), d.uniform(8, scale=0.3)
    return Case({"input/x": x, "weights/channel_attention_dense_1/kernel": k1,
                 "weights/channel_attention_dense_1/bias": b1, "weights/channel_attention_dense_2/kernel": k2,
                 "weights/channel_attention_dense_2/bias": b2, "expected/output": channel_gate(x, k1, k2, b1, b2)},
                {"channels": 8, "ratio": 2, "use_bias": True})


@case("channel", "no_bias")
def channel_no_bias(d):
    x = d.uniform(3, 3, 6, 16, scale=2.0)
    k1, k2 = d.uniform(16, 4), d.uniform(4, 16)
    return Case({"input/x": x, "weights/channel_attention_dense_1/kernel": k1,
                 "weights/channel_attention_dense_2/kernel": k2, "expected/output": channel_gate(x, k1, k2)},
                {"channels": 16, "ratio": 4})


@case("spatial", "k3_bias")
def spatial_k3(d):
    x = d.uniform(2, 6, 5, 3)
    k, b = d.uniform(3, 3, 2, 1), d.uniform(1, scale=0.3)
    return Case({"input/x": x, "weights/spatial_attention_conv/kernel": k, "weights/spatial_attention_conv/bias": b,
                 "expected/output": spatial_gate(x, k, b)}, {"kernel_size": 3})


@case("spatial", "k7_larger_than_width_no_bias")
def spatial_k7(d):
    x = d.uniform(2, 6, 5, 4)
    k = d.uniform(7, 7, 2, 1, scale=0.5)
    return Case({"input/x": x, "weights/spatial_attention_conv/kernel": k, "expected/output": spatial_gate(x, k)},
                {"kernel_size": 7, "use_bias": False})


@case("spatial", "k3x5_bias")
def spatial_rect(d):
    x = d.uniform(1, 4, 7, 2)
    k, b = d.uniform(3, 5, 2, 1, scale=0.5), d.uniform(1, scale=0.3)
    return Case({"input/x": x, "weights/spatial_attention_conv/kernel": k, "weights/spatial_attention_conv/bias": b,
                 "expected/output": spatial_gate(x, k, b)}, {"kernel_size": [3, 5]})


def cbam_case(d, shape, ratio, ksize, channel_bias, spatial_bias):
    b, h, w, c = shape
    x = d.uniform(*shape)
    t = {"input/x": x}
    k1 = d.uniform(c, c // ratio)
    b1 = d.uniform(c // ratio, scale=0.3) if channel_bias else None
    k2 = d.uniform(c // ratio, c)
    b2 = d.uniform(c, scale=0.3) if channel_bias else None
    ks = d.uniform(ksize, ksize, 2, 1, scale=0.5)
    bs = d.uniform(1, scale=0.3) if spatial_bias else None
    t["weights/channel_attention/channel_attention_dense_1/kernel"] = k1
    if channel_bias:
        t["weights/channel_attention/channel_attention_dense_1/bias"] = b1
    t["weights/channel_attention/channel_attention_dense_2/kernel"] = k2
    if channel_bias:
        t["weights/channel_attention/channel_attention_dense_2/bias"] = b2
    t["weights/spatial_attention/spatial_attention_conv/kernel"] = ks
    if spatial_bias:
        t["weights/spatial_attention/spatial_attention_conv/bias"] = bs
    f1 = x * channel_gate(x, k1, k2, b1, b2)
    t["expected/output"] = f1 * spatial_gate(f1, ks, bs)
    return Case(t, {"channels": c, "ratio": ratio, "kernel_size": ksize, "channel_use_bias": channel_bias,
                    "spatial_use_bias": spatial_bias})


@case("cbam", "k5_biases")
def cbam_biases(d):
    return cbam_case(d, (2, 6, 6, 8), ratio=4, ksize=5, channel_bias=True, spatial_bias=True)


@case("cbam", "k3_defaults")
def cbam_defaults(d):
    return cbam_case(d, (2, 5, 7, 16), ratio=8, ksize=3, channel_bias=False, spatial_bias=True)


# --------------------------------------------------------------------------------------------------


def generate(type_name, name, dtype_key, fn, out_dir):
    torch_dtype, _, _ = DTYPES[dtype_key]
    seed = zlib.crc32(f"{type_name}/{name}/{dtype_key}".encode())
    result = fn(Draw(seed, torch_dtype))
    rtol, atol = result.tolerances.get(dtype_key, TOLERANCES[dtype_key])
    np_dtype = np.float32 if dtype_key == "f32" else np.float64
    arrays = {n: t.detach().to(torch.float64).numpy().astype(np_dtype) for n, t in result.tensors.items()}
    meta = {"type": type_name, "case": name, "dtype": dtype_key, "rtol": repr(rtol), "atol": repr(atol),
            "generator": "tools/make_golden.py", "torch": torch.__version__,
            "config": json.dumps(result.config, separators=(",", ":"))}
    meta.update({k: str(v) for k, v in result.meta.items()})
    path = out_dir / type_name / f"{name}_{dtype_key}.safetensors"
    write_safetensors(path, arrays, meta)
    return path


def load_golden_modules():
    """Registers the cases of every tools/golden/*.py module (they `import make_golden as g`)."""
    import importlib.util
    sys.modules.setdefault("make_golden", sys.modules[__name__])
    for path in sorted((ROOT / "tools" / "golden").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"golden_{path.stem}", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def main(argv):
    load_golden_modules()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", help="generate only this type (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--out", type=pathlib.Path, default=DATA, help="output directory (default tests/data)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    total = 0
    for type_name, name, dtypes, fn in CASES:
        if args.only and type_name not in args.only:
            continue
        for dtype_key in dtypes:
            if args.list:
                print(f"{type_name}/{name}_{dtype_key}")
                continue
            path = generate(type_name, name, dtype_key, fn, args.out)
            total += path.stat().st_size
            print(f"{path.relative_to(args.out)}  {path.stat().st_size} bytes")
    if not args.list:
        print(f"{total} bytes in all")
        if total > 10 * 1024 * 1024:
            sys.exit("golden data exceeds 10 MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
