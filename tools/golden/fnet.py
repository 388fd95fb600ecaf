"""Golden cases of the fnet layer: torch.fft.fft2's real part over (sequence, hidden), orthonormal
scale, rows of masked tokens zeroed after the mixing."""

import math

import torch

from common import Case, as_float, case


def fnet_case(d, b, n, dim, normalize=True, keep=None):
    x = d.uniform(b, n, dim)
    y = torch.fft.fft2(x, dim=(-2, -1)).real
    if normalize:
        y = y / math.sqrt(n * dim)
    tensors = {"input/x": x}
    if keep is not None:
        y = torch.where(keep[:, :, None], y, torch.zeros_like(y))
        tensors["input/mask"] = as_float(keep)
    tensors["expected/output"] = y
    return Case(tensors, {"normalize_dft": normalize})


@case("fnet", "normalized_mask")
def fnet_mask(d):
    keep = torch.ones(2, 5, dtype=torch.bool)
    keep[1, 3:] = False
    return fnet_case(d, 2, 5, 6, keep=keep)


@case("fnet", "unnormalized")
def fnet_plain(d):
    return fnet_case(d, 2, 7, 4, normalize=False)


@case("fnet", "odd_sizes")
def fnet_odd(d):
    return fnet_case(d, 1, 13, 10)
