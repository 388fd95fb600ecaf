"""Golden cases of the adaptive_multi_head layer (AdaptiveMultiHeadAttention): Keras multi-head attention
(rank-3 projection kernels [in, heads, dim], output kernel [heads, dim, out]) whose softmax is the
adaptive-temperature softmax: per row p = softmax(z), H = -sum clip(p) ln clip(p), a temperature from the
entropy polynomial, softmax(z / tau). Masked logits are replaced by -1e9 as in the reference; every case
keeps at least one key per row (a fully masked row is the library's zero row, tested in C++)."""

import math

import torch

from common import Case, as_float, case, merge_heads

DEFAULT_COEFFS = [-1.791, 4.917, -2.3, 0.481, -0.037]


def ats(z, min_temp, max_temp, threshold, coeffs, eps=1e-7):
    p = torch.softmax(z, dim=-1)
    pc = torch.clamp(p, eps, 1 - eps)
    h = -(pc * torch.log(pc)).sum(dim=-1, keepdim=True)
    # the temperature jumps at the threshold: keep every entropy away from it so rounding cannot flip it
    assert float((h - threshold).abs().min()) > 1e-3, float((h - threshold).abs().min())
    poly = torch.zeros_like(h)
    for c in coeffs:
        poly = poly * h + c
    tau = torch.where(h > threshold, min_temp + (max_temp - min_temp) * torch.clamp(poly, 0, 1),
                      torch.ones_like(h))
    return torch.softmax(z / torch.clamp(tau, min=eps), dim=-1)


def project(x, kernel, bias):
    y = torch.einsum("btd,dhk->bhtk", x, kernel)
    return y if bias is None else y + bias[None, :, None, :]


def amha_case(d, heads, dk, dv, dq_in, dv_in, dk_in, t, s, out=None, bias=True, keep=None, cross_key=False,
              temps=(0.1, 1.0, 0.5), coeffs=None, scale_x=1.0):
    b = 2
    xq = d.uniform(b, t, dq_in, scale=scale_x)
    xv = d.uniform(b, s, dv_in, scale=scale_x)
    xk = d.uniform(b, s, dk_in, scale=scale_x) if cross_key else xv
    dout = out or dq_in
    w = {}
    w["query/kernel"] = d.uniform(dq_in, heads, dk)
    if bias:
        w["query/bias"] = d.uniform(heads, dk, scale=0.2)
    w["key/kernel"] = d.uniform(dk_in, heads, dk)
    if bias:
        w["key/bias"] = d.uniform(heads, dk, scale=0.2)
    w["value/kernel"] = d.uniform(dv_in, heads, dv, scale=0.5)
    if bias:
        w["value/bias"] = d.uniform(heads, dv, scale=0.2)
    w["attention_output/kernel"] = d.uniform(heads, dv, dout, scale=0.5)
    if bias:
        w["attention_output/bias"] = d.uniform(dout, scale=0.2)
    q = project(xq, w["query/kernel"], w.get("query/bias")) / math.sqrt(dk)
    k = project(xk, w["key/kernel"], w.get("key/bias"))
    v = project(xv, w["value/kernel"], w.get("value/bias"))
    z = torch.matmul(q, k.transpose(-1, -2))
    if keep is not None:
        allowed = keep[:, None, None, :] if keep.dim() == 2 else keep[:, None, :, :]
        z = torch.where(allowed, z, torch.full_like(z, -1e9))
    p = ats(z, temps[0], temps[1], temps[2], coeffs or DEFAULT_COEFFS)
    o = torch.matmul(p, v)
    y = torch.einsum("bthc,hce->bte", merge_heads(o).reshape(b, t, heads, dv), w["attention_output/kernel"])
    if bias:
        y = y + w["attention_output/bias"]
    tensors = {"input/query": xq, "input/value": xv}
    if cross_key:
        tensors["input/key"] = xk
    if keep is not None:
        tensors["input/mask"] = as_float(keep)
    for name, value in w.items():
        tensors["weights/" + name] = value
    tensors["expected/output"] = y
    tensors["expected/weights"] = p
    config = {"num_heads": heads, "key_dim": dk, "use_bias": bias, "min_temp": temps[0], "max_temp": temps[1],
              "entropy_threshold": temps[2], "query_input_dim": dq_in}
    if dv != dk:
        config["value_dim"] = dv
    if dv_in != dq_in:
        config["value_input_dim"] = dv_in
    if cross_key:
        config["key_input_dim"] = dk_in
    if out:
        config["output_shape"] = out
    if coeffs:
        config["polynomial_coeffs"] = coeffs
    return Case(tensors, config)


@case("adaptive_multi_head", "self_defaults")
def amha_self(d):
    # S = 6 keys: entropies on both sides of the threshold (tau = 1 and the sharpening branch)
    return amha_case(d, heads=2, dk=4, dv=4, dq_in=8, dv_in=8, dk_in=8, t=6, s=6, scale_x=2.0)


@case("adaptive_multi_head", "cross_key_padding")
def amha_cross(d):
    # 20 keys (ln 20 = 3.0: diffuse rows get tau = 0.1), a separate key input, value_dim != key_dim,
    # output_shape, key padding
    keep = d.keep(2, 20, p=0.8)
    keep[:, 0] = True
    return amha_case(d, heads=3, dk=4, dv=5, dq_in=6, dv_in=7, dk_in=5, t=5, s=20, out=9, keep=keep,
                     cross_key=True, scale_x=1.5)


@case("adaptive_multi_head", "attention_mask_custom_schedule")
def amha_mask(d):
    keep = d.keep(2, 7, 9, p=0.6)
    keep[:, :, 2] = True
    return amha_case(d, heads=2, dk=3, dv=3, dq_in=5, dv_in=5, dk_in=5, t=7, s=9, bias=False, keep=keep,
                     temps=(0.25, 0.8, 0.3), coeffs=[-0.5, 1.2, 0.1])
