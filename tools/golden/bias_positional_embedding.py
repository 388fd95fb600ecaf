"""Golden cases of bias_positional_embedding (CMT's BiasPositionalEmbedding, spec §4.1): the forward
x + bias for each kind of axis list, and load_resized_weights (the reference's two resize passes)
against PyTorch's interpolate (bilinear with align_corners=False; nearest-exact for TF2's nearest)."""

import math

import torch

from common import Case, case

MODES = {"bilinear": dict(mode="bilinear", align_corners=False), "nearest": dict(mode="nearest-exact")}


def resize_nhwc(x, h, w, method):
    y = torch.nn.functional.interpolate(x.permute(0, 3, 1, 2), size=(h, w), **MODES[method])
    return y.permute(0, 2, 3, 1)


def forward_case(d, shape, axis, bias_shape):
    x, bias = d.uniform(2, *shape), d.uniform(*bias_shape)
    config = {"input_shape": list(shape)}
    if axis is not None:
        config["axis"] = axis
    return Case({"input/x": x, "weights/positional_embedding": bias, "expected/output": x + bias}, config)


@case("bias_positional_embedding", "default_axis")
def default_axis(d):
    return forward_case(d, (3, 16, 4), None, (3, 16, 4))


@case("bias_positional_embedding", "axis_2_3")
def axis_2_3(d):
    return forward_case(d, (2, 9, 5), [2, 3], (1, 9, 5))


@case("bias_positional_embedding", "axis_heads")
def axis_heads(d):
    return forward_case(d, (4, 6, 3), [1], (4, 1, 1))


@case("bias_positional_embedding", "axis_last")
def axis_last(d):
    return forward_case(d, (2, 5, 7), [-1], (7,))


def resize_case(d, method, heads, qs, ks, nq, nk, attn_height):
    """The reference's load_resized_weights written with torch operators."""
    source = d.uniform(heads, qs * qs, ks * ks)
    qh = attn_height if attn_height > 0 else int(math.sqrt(nq))
    qw = nq // qh
    sr = int(math.sqrt(nq / nk))
    kvh = qh // sr
    kvw = nk // kvh
    t = resize_nhwc(source.reshape(heads, qs, qs, ks * ks), qh, qw, method)  # [h, qh, qw, ks²]
    t = t.reshape(heads, qh * qw, ks, ks).permute(0, 2, 3, 1)  # [h, ks, ks, Q]
    t = resize_nhwc(t, kvh, kvw, method)  # [h, kvh, kvw, Q]
    bias = t.reshape(heads, kvh * kvw, qh * qw).permute(0, 2, 1)
    x = d.uniform(2, heads, nq, nk)
    config = {"input_shape": [heads, nq, nk]}
    if attn_height > 0:
        config["attn_height"] = attn_height
    return Case({"input/x": x, "input/source": source, "expected/positional_embedding": bias,
                 "expected/output": x + bias}, config, meta={"method": method})


@case("bias_positional_embedding", "resize_bilinear")
def resize_bilinear(d):
    return resize_case(d, "bilinear", 2, 4, 2, 36, 9, -1)


@case("bias_positional_embedding", "resize_bilinear_rect")
def resize_bilinear_rect(d):
    return resize_case(d, "bilinear", 3, 3, 3, 24, 6, 4)


@case("bias_positional_embedding", "resize_nearest")
def resize_nearest(d):
    return resize_case(d, "nearest", 2, 5, 5, 16, 16, -1)
