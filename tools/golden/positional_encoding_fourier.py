"""Golden cases of positional_encoding_fourier (EdgeNeXt's PositionalEncodingFourier, spec §4.9): the
sine/cosine code written with torch operators from the spec's formulas, projected and added."""

import math

import torch

from common import Case, case, linear


def fourier_code(h, w, filters, temperature):
    eps, scale = 1e-6, 2 * math.pi
    py = torch.arange(1, h + 1, dtype=torch.float64) / (h + eps) * scale
    px = torch.arange(1, w + 1, dtype=torch.float64) / (w + eps) * scale
    m = torch.arange(filters, dtype=torch.float64)
    dim_t = temperature ** (2 * torch.div(m, 2, rounding_mode="floor") / filters)

    def enc(v):
        z = v[:, None] / dim_t
        return torch.where(m.long() % 2 == 0, torch.sin(z), torch.cos(z))  # [n, filters]

    ey, ex = enc(py), enc(px)
    return torch.cat([ey[:, None, :].expand(h, w, filters), ex[None, :, :].expand(h, w, filters)], dim=-1)


def fourier_case(d, shape, filters, temperature):
    b, h, w, c = shape
    x = d.uniform(*shape)
    ww, bb = d.uniform(2 * filters, c), d.uniform(c, scale=0.5)
    code = fourier_code(h, w, filters, temperature)
    config = {"channels": c, "filters": filters}
    if temperature != 1e4:
        config["temperature"] = temperature
    return Case({"input/x": x, "weights/ww": ww, "weights/bb": bb, "expected/code": code,
                 "expected/output": x + linear(code, ww, bb)}, config)


@case("positional_encoding_fourier", "filters8")
def filters8(d):
    return fourier_case(d, (2, 3, 5, 6), 8, 1e4)


@case("positional_encoding_fourier", "filters4_temperature100")
def filters4_temperature100(d):
    return fourier_case(d, (1, 2, 3, 5), 4, 100.0)


@case("positional_encoding_fourier", "filters32_default")
def filters32_default(d):
    return fourier_case(d, (2, 4, 7, 3), 32, 1e4)
