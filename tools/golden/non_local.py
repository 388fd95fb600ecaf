"""Golden cases of the non_local layer, its intended behaviour (spec §4.14): torch conv2d with groups=C for
the depthwise convolution (Keras 'same' padding spelled out with F.pad), batch_norm in eval mode or
layer_norm, 1x1 conv2d projections, softmax(s·Q Kᵀ) (dot_product, learnable s) or softmax(Q Kᵀ)
(gaussian, Q/K/V of width max(1, C_a // 8)), P·V, the 1x1 output conv and the output activation."""

import torch
import torch.nn.functional as F

from common import Case, case

ACT = {"relu": torch.relu, "linear": lambda z: z, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
       "gelu": lambda z: F.gelu(z)}


def conv1x1(u_nchw, kernel, bias):
    return F.conv2d(u_nchw, kernel.permute(3, 2, 0, 1), bias)


def non_local(x, w, cfg):
    b, h, wd, c = x.shape
    kh, kw = cfg["kernel_size"]
    act_i, act_o = ACT[cfg["intermediate_activation"]], ACT[cfg["output_activation"]]
    xc = x.permute(0, 3, 1, 2)
    top, left = (kh - 1) // 2, (kw - 1) // 2
    xc = F.pad(xc, (left, kw - 1 - left, top, kh - 1 - top))
    u = F.conv2d(xc, w["depthwise_conv/kernel"].permute(2, 3, 0, 1), w.get("depthwise_conv/bias"), groups=c)
    u = act_i(u)
    if cfg["normalization"] == "batch":
        u = F.batch_norm(u, w["normalization_layer/moving_mean"], w["normalization_layer/moving_variance"],
                         w["normalization_layer/gamma"], w["normalization_layer/beta"], training=False, eps=1e-5)
    elif cfg["normalization"] == "layer":
        u = F.layer_norm(u.permute(0, 2, 3, 1), (c,), w["normalization_layer/gamma"], w["normalization_layer/beta"],
                         eps=1e-5).permute(0, 3, 1, 2)
    q = conv1x1(u, w["query_conv/kernel"], w.get("query_conv/bias"))
    k = act_i(conv1x1(u, w["key_conv/kernel"], w.get("key_conv/bias")))
    v = conv1x1(u, w["value_conv/kernel"], w.get("value_conv/bias"))
    flat = [t.flatten(2).transpose(1, 2) for t in (q, k, v)]  # [B, P, C_kv], position r·W + c
    z = flat[0] @ flat[1].transpose(1, 2)
    if cfg["attention_mode"] == "dot_product":
        z = z * w["attention/scale"]
    p = torch.softmax(z, dim=-1)
    y = (p @ flat[2]).transpose(1, 2).reshape(b, -1, h, wd)
    out = act_o(conv1x1(y, w["output_conv/kernel"], w.get("output_conv/bias")))
    return out.permute(0, 2, 3, 1), p[:, None]


def non_local_case(d, b, h, wd, cin, ca, mode, norm, kernel, bias=False, cout=-1, act_i="relu", act_o="linear",
                   kernel_json=None):
    kv = ca if mode == "dot_product" else max(1, ca // 8)
    co = cout if cout > 0 else cin
    x = d.uniform(b, h, wd, cin)
    w = {"depthwise_conv/kernel": d.uniform(kernel[0], kernel[1], cin, 1, scale=0.6)}
    if bias:
        w["depthwise_conv/bias"] = d.uniform(cin, scale=0.2)
    if norm in ("batch", "layer"):
        w["normalization_layer/gamma"] = 1 + d.uniform(cin, scale=0.3)
        w["normalization_layer/beta"] = d.uniform(cin, scale=0.3)
        if norm == "batch":
            w["normalization_layer/moving_mean"] = d.uniform(cin, scale=0.3)
            w["normalization_layer/moving_variance"] = 1 + d.uniform(cin, scale=0.5)
    for name in ("query_conv", "key_conv", "value_conv"):
        w[f"{name}/kernel"] = d.uniform(1, 1, cin, kv, scale=0.7)
        if bias:
            w[f"{name}/bias"] = d.uniform(kv, scale=0.2)
    if mode == "dot_product":
        w["attention/scale"] = 0.5 + d.uniform(1, scale=0.3).reshape(())
    w["output_conv/kernel"] = d.uniform(1, 1, kv, co, scale=0.7)
    if bias:
        w["output_conv/bias"] = d.uniform(co, scale=0.2)
    cfg = {"attention_channels": ca, "kernel_size": kernel_json if kernel_json is not None else list(kernel),
           "use_bias": bias, "normalization": norm, "intermediate_activation": act_i, "output_activation": act_o,
           "output_channels": cout, "attention_mode": mode, "input_channels": cin}
    ref_cfg = dict(cfg, kernel_size=kernel)
    y, p = non_local(x, w, ref_cfg)
    tensors = {"input/x": x, **{f"weights/{k}": v for k, v in w.items()}, "expected/output": y, "expected/weights": p}
    return Case(tensors, cfg)


@case("non_local", "gaussian_defaults_batch_norm_7x9_b3")
def gaussian_defaults(d):
    # the reference's defaults: gaussian, batch norm, 7x7 depthwise kernel, no bias, dropout 0
    return non_local_case(d, b=3, h=7, wd=9, cin=16, ca=16, mode="gaussian", norm="batch", kernel=(7, 7),
                          kernel_json=7)


@case("non_local", "dot_product_layer_norm_bias_k3x5")
def dot_product_layer(d):
    return non_local_case(d, b=2, h=5, wd=4, cin=5, ca=4, mode="dot_product", norm="layer", kernel=(3, 5), bias=True,
                          cout=6, act_o="sigmoid")


@case("non_local", "gaussian_no_norm_even_kernel_tanh")
def gaussian_even(d):
    return non_local_case(d, b=2, h=4, wd=5, cin=3, ca=4, mode="gaussian", norm="none", kernel=(2, 2), act_i="tanh")
