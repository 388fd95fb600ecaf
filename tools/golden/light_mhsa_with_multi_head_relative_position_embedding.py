"""Golden cases of light_mhsa_with_multi_head_relative_position_embedding (CMT's light MHSA, spec §5.4 with
§4.6, §2.1 and Appendix A.4), written with torch operators: the query projection, the sr x sr stride-sr
depthwise convolution (F.conv2d with groups = C) followed by LayerNorm or inference BatchNorm (eps 1e-5), the
key/value projection split as HEAD ([key | value] blocks, head-major) or as the seed era ([d, h, 2] view),
the KCAM relative index from the spec's formula (a = p mod H, b = p div H) keeping its last Nk columns, the
table gathered per head and added to q kᵀ·d^-0.5, softmax, P v, merged heads, the output matmul."""

import torch
import torch.nn.functional as F

from common import Case, case


def kcam_index(hh, ww, nk):
    p = torch.arange(hh * ww)
    a, b = p % hh, p // hh
    full = (a[:, None] - a[None, :] + hh - 1) + (b[:, None] - b[None, :] + ww - 1) * (2 * hh - 1)
    return full[:, hh * ww - nk:]


def cmt(x, w, cfg):
    b, hh, ww, c = x.shape
    h = cfg.get("num_heads", 4)
    d = cfg.get("key_dim", 0) or c // h
    e, n = h * d, hh * ww
    s = cfg.get("sr_ratio", 1)
    seed = cfg.get("weight_layout", "head") == "seed"
    qn, kvn = ("query", "key_value") if seed else ("query_conv", "key_value_conv")

    def proj(z, name):
        kernel = w[name + "/kernel"]
        y = z @ kernel.reshape(kernel.shape[-2], kernel.shape[-1])
        return y + w[name + "/bias"] if name + "/bias" in w else y

    q = proj(x.reshape(b, n, c), qn).reshape(b, n, h, d).transpose(1, 2)
    src = x
    if s > 1:
        dw = w["kv_sr_dw_conv/depthwise_kernel"].permute(2, 3, 0, 1)  # [C, 1, s, s]
        src = F.conv2d(x.permute(0, 3, 1, 2), dw, w.get("kv_sr_dw_conv/bias"), stride=s, groups=c).permute(0, 2, 3, 1)
        if cfg.get("use_bn"):
            src = (src - w["kv_sr_bn/moving_mean"]) / torch.sqrt(w["kv_sr_bn/moving_variance"] + 1e-5)
            src = src * w["kv_sr_bn/gamma"] + w["kv_sr_bn/beta"]
        else:
            src = F.layer_norm(src, (c,), w["kv_sr_ln/gamma"], w["kv_sr_ln/beta"], eps=1e-5)
    nk = src.shape[1] * src.shape[2]
    kv = proj(src.reshape(b, nk, c), kvn)
    if seed:
        kv = kv.reshape(b, nk, d, h, 2)
        k, v = kv[..., 0].permute(0, 3, 1, 2), kv[..., 1].permute(0, 3, 1, 2)  # [b, h, nk, d]
    else:
        k, v = (z.reshape(b, nk, h, d).transpose(1, 2) for z in kv.split([e, e], dim=-1))
    bias = w["pos_emb/positional_embedding"][:, kcam_index(hh, ww, nk)]  # [h, N, Nk]
    p = torch.softmax((q @ k.transpose(-1, -2)) * d ** -0.5 + bias, dim=-1)
    y = (p @ v).transpose(1, 2).reshape(b, n, e)
    if cfg.get("out_weight", True):
        y = y @ w["output/kernel"]
        if "output/bias" in w:
            y = y + w["output/bias"]
    return y.reshape(b, hh, ww, -1), p


def cmt_case(dr, b, cfg):
    hh, ww, c = cfg["input_shape"]
    h = cfg.get("num_heads", 4)
    e = h * (cfg.get("key_dim", 0) or c // h)
    o = cfg.get("out_shape") or c
    s = cfg.get("sr_ratio", 1)
    seed = cfg.get("weight_layout", "head") == "seed"
    qn, kvn = ("query", "key_value") if seed else ("query_conv", "key_value_conv")
    kshape = (lambda m: (c, m)) if seed else (lambda m: (1, 1, c, m))
    x = dr.uniform(b, hh, ww, c)
    w = {qn + "/kernel": dr.uniform(*kshape(e), scale=0.5)}
    if cfg.get("qkv_bias"):
        w[qn + "/bias"] = dr.uniform(e, scale=0.3)
    if s > 1:
        w["kv_sr_dw_conv/depthwise_kernel"] = dr.uniform(s, s, c, 1, scale=0.6)
        if cfg.get("qkv_bias"):
            w["kv_sr_dw_conv/bias"] = dr.uniform(c, scale=0.3)
        if cfg.get("use_bn"):
            w["kv_sr_bn/gamma"] = 1.0 + dr.uniform(c, scale=0.3)
            w["kv_sr_bn/beta"] = dr.uniform(c, scale=0.3)
            w["kv_sr_bn/moving_mean"] = dr.uniform(c, scale=0.3)
            w["kv_sr_bn/moving_variance"] = 1.0 + dr.uniform(c, scale=0.5)
        else:
            w["kv_sr_ln/gamma"] = 1.0 + dr.uniform(c, scale=0.3)
            w["kv_sr_ln/beta"] = dr.uniform(c, scale=0.3)
    w[kvn + "/kernel"] = dr.uniform(*kshape(2 * e), scale=0.5)
    if cfg.get("qkv_bias"):
        w[kvn + "/bias"] = dr.uniform(2 * e, scale=0.3)
    w["pos_emb/positional_embedding"] = dr.uniform(h, (2 * hh - 1) * (2 * ww - 1), scale=2.0)
    if cfg.get("out_weight", True):
        w["output/kernel"] = dr.uniform(e, o, scale=0.5)
        if cfg.get("out_bias"):
            w["output/bias"] = dr.uniform(o, scale=0.3)
    y, p = cmt(x, w, cfg)
    tensors = {"input/x": x, **{f"weights/{k}": v for k, v in w.items()}, "expected/output": y,
               "expected/weights": p}
    return Case(tensors, cfg)


@case("light_mhsa_with_multi_head_relative_position_embedding", "sr2_layer_norm_biases_7x9")
def sr2(dr):
    return cmt_case(dr, 2, {"input_shape": [7, 9, 16], "sr_ratio": 2, "qkv_bias": True})


@case("light_mhsa_with_multi_head_relative_position_embedding", "seed_layout_bn_sr3_key_dim_7x8")
def seed_layout(dr):
    return cmt_case(dr, 2, {"input_shape": [7, 8, 12], "num_heads": 3, "key_dim": 5, "sr_ratio": 3,
                            "use_bn": True, "qkv_bias": True, "out_shape": 10, "out_bias": True,
                            "weight_layout": "seed"})


@case("light_mhsa_with_multi_head_relative_position_embedding", "sr1_no_out_weight_5x4")
def sr1(dr):
    return cmt_case(dr, 3, {"input_shape": [5, 4, 8], "num_heads": 2, "out_weight": False})
