"""Golden cases of multi_head_positional_embedding (LeViT's MultiHeadPositionalEmbedding, spec §4.4): the
index written from the spec's formula (strided queries, the key-height search), the gather and add with
torch operators, and load_resized_weights against PyTorch's interpolate."""

import math

import torch

from common import Case, case

MODES = {"bilinear": dict(mode="bilinear", align_corners=False), "nearest": dict(mode="nearest-exact")}


def levit_index(nq, nk, query_height=-1, key_height=-1):
    qh = query_height if query_height > 0 else int(math.sqrt(nq))
    s = math.ceil(math.sqrt(nk / nq))
    if key_height > 0:
        kh = key_height
    else:
        kh = qh * s
        while nk % kh != 0:
            kh -= 1
    p, m = torch.arange(nq), torch.arange(nk)
    ax, ay = p % qh, p // qh
    bx, by = m % kh, m // kh
    return (bx[None, :] - s * ax[:, None]).abs() + kh * (by[None, :] - s * ay[:, None]).abs(), kh


def forward_case(d, shape, query_height=-1, key_height=-1):
    nq, nk = shape[-2], shape[-1]
    idx, _ = levit_index(nq, nk, query_height, key_height)
    heads = shape[0] if len(shape) == 3 else None
    table = d.uniform(nk, heads) if heads else d.uniform(nk)
    bias = table[idx].permute(2, 0, 1) if heads else table[idx]
    x = d.uniform(2, *shape)
    config = {"input_shape": list(shape)}
    if query_height > 0:
        config["query_height"] = query_height
    if key_height > 0:
        config["key_height"] = key_height
    return Case({"input/x": x, "weights/positional_embedding": table, "expected/index": idx.to(torch.float64),
                 "expected/output": x + bias}, config)


@case("multi_head_positional_embedding", "strided_4x4_7x7")
def strided_4x4_7x7(d):
    return forward_case(d, (3, 16, 49))


@case("multi_head_positional_embedding", "square_3x3")
def square_3x3(d):
    return forward_case(d, (2, 9, 9))


@case("multi_head_positional_embedding", "rect_query_height")
def rect_query_height(d):
    return forward_case(d, (2, 12, 48), query_height=3, key_height=6)


@case("multi_head_positional_embedding", "single_head")
def single_head(d):
    return forward_case(d, (4, 16))


def resize_case(d, method, heads, side, shape, key_height=-1):
    nq, nk = shape[-2], shape[-1]
    idx, kh = levit_index(nq, nk, -1, key_height)
    kw = nk // kh
    source = d.uniform(side * side, heads)
    img = source.reshape(1, side, side, heads).permute(0, 3, 1, 2)
    table = torch.nn.functional.interpolate(img, size=(kh, kw), **MODES[method]).permute(0, 2, 3, 1).reshape(nk, heads)
    x = d.uniform(2, heads, nq, nk)
    config = {"input_shape": [heads, nq, nk]}
    if key_height > 0:
        config["key_height"] = key_height
    return Case({"input/x": x, "input/source": source, "expected/positional_embedding": table,
                 "expected/output": x + table[idx].permute(2, 0, 1)}, config, meta={"method": method})


@case("multi_head_positional_embedding", "resize_bilinear")
def resize_bilinear(d):
    return resize_case(d, "bilinear", 2, 4, (2, 9, 36))


@case("multi_head_positional_embedding", "resize_nearest_rect")
def resize_nearest_rect(d):
    return resize_case(d, "nearest", 3, 3, (3, 4, 20), key_height=4)
