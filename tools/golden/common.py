"""Shared helpers of the golden-data generator (tools/make_golden.py): the safetensors writer, the case
registry (@case, Case, Draw), the dtypes and tolerances, and reference building blocks made of torch
operators only. One module per type under tools/golden/ (tools/golden/<type>.py) imports this one as
`import common as g` (or `from common import ...`) and declares its cases with @g.case(type, name).
"""

import json
import math
import pathlib
import struct
import zlib

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
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
        array = np.ascontiguousarray(array).reshape(np.shape(array))  # keeps 0-d (scalar weights) 0-d
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


def prefix_padding(d, shape):
    """Key padding [B, 1, 1, S]: item b keeps its first lengths[b] keys."""
    b, s = shape[0], shape[-1]
    lengths = [s - (i * 2) % s for i in range(b)]
    keep = torch.zeros(*shape, dtype=torch.bool)
    for i, n in enumerate(lengths):
        keep[i, ..., :n] = True
    return keep


# --------------------------------------------------------------------------------------------------
# writing one case


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
