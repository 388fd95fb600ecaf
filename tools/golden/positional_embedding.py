"""Golden cases of positional_embedding (VOLO's PositionalEmbedding, spec §4.8): the forward
x + positional_embedding on images and tokens, and load_resized_weights against PyTorch's
interpolate (bilinear with align_corners=False; nearest-exact for TF2's half-pixel nearest)."""

import torch

from common import Case, case

MODES = {"bilinear": dict(mode="bilinear", align_corners=False), "nearest": dict(mode="nearest-exact")}


def resize_nhwc(x, h, w, method):
    """[B, H, W, C] -> [B, h, w, C] through torch.nn.functional.interpolate (antialias off)."""
    y = torch.nn.functional.interpolate(x.permute(0, 3, 1, 2), size=(h, w), **MODES[method])
    return y.permute(0, 2, 3, 1)


@case("positional_embedding", "image")
def image(d):
    x, pe = d.uniform(2, 3, 4, 5), d.uniform(1, 3, 4, 5)
    return Case({"input/x": x, "weights/positional_embedding": pe, "expected/output": x + pe},
                {"input_shape": [3, 4, 5]})


@case("positional_embedding", "tokens")
def tokens(d):
    x, pe = d.uniform(3, 7, 4), d.uniform(1, 7, 4)
    return Case({"input/x": x, "weights/positional_embedding": pe, "expected/output": x + pe},
                {"input_shape": [7, 4]})


def image_resize(d, method, src, dst):
    source = d.uniform(1, *src)
    x = d.uniform(2, *dst)
    pe = resize_nhwc(source, dst[0], dst[1], method)
    return Case({"input/x": x, "input/source": source, "expected/positional_embedding": pe,
                 "expected/output": x + pe}, {"input_shape": list(dst)}, meta={"method": method})


@case("positional_embedding", "resize_image_bilinear")
def resize_image_bilinear(d):
    return image_resize(d, "bilinear", (4, 4, 6), (7, 5, 6))


@case("positional_embedding", "resize_image_bilinear_down")
def resize_image_bilinear_down(d):
    return image_resize(d, "bilinear", (9, 6, 3), (4, 5, 3))


@case("positional_embedding", "resize_image_nearest")
def resize_image_nearest(d):
    return image_resize(d, "nearest", (3, 5, 4), (7, 4, 4))


def token_resize(d, method, lead, side, grid, channels):
    n_s, n = lead + side * side, lead + grid[0] * grid[1]
    source = d.uniform(1, n_s, channels)
    img = source[:, lead:].reshape(1, side, side, channels)
    body = resize_nhwc(img, grid[0], grid[1], method).reshape(1, grid[0] * grid[1], channels)
    pe = torch.cat([source[:, :lead], body], dim=1)
    x = d.uniform(2, n, channels)
    config = {"input_shape": [n, channels]}
    if grid[0] != grid[1]:
        config["input_height"] = grid[0]
    return Case({"input/x": x, "input/source": source, "expected/positional_embedding": pe,
                 "expected/output": x + pe}, config, meta={"method": method})


@case("positional_embedding", "resize_tokens_class_bilinear")
def resize_tokens_class_bilinear(d):
    return token_resize(d, "bilinear", 1, 3, (5, 4), 6)


@case("positional_embedding", "resize_tokens_square_nearest")
def resize_tokens_square_nearest(d):
    return token_resize(d, "nearest", 0, 4, (6, 6), 3)


@case("positional_embedding", "resize_tokens_two_leading_bilinear")
def resize_tokens_two_leading_bilinear(d):
    return token_resize(d, "bilinear", 2, 5, (3, 3), 4)
