"""Golden cases of the differential layer: two Keras MultiHeadAttention branches (rank-3 kernels)
subtracted with the depth-dependent lambda (the reference's math), and the paper's map subtraction."""

import math

import torch

from common import Case, as_float, case, linear, merge_heads, sdpa_reference, split_heads


def lam(layer_idx, lambda_param):
    f = 0.8 - 0.6 * math.exp(-0.3 * max(layer_idx - 1, 0))
    return min(max(f * lambda_param, 0.1), 0.9)


def branch_weights(d, dim, heads, hd):
    return {
        "query/kernel": d.uniform(dim, heads, hd, scale=0.5), "query/bias": d.uniform(heads, hd, scale=0.2),
        "key/kernel": d.uniform(dim, heads, hd, scale=0.5), "key/bias": d.uniform(heads, hd, scale=0.2),
        "value/kernel": d.uniform(dim, heads, hd, scale=0.5), "value/bias": d.uniform(heads, hd, scale=0.2),
        "attention_output/kernel": d.uniform(heads, hd, dim, scale=0.5),
        "attention_output/bias": d.uniform(dim, scale=0.2),
    }


def project(x, w, name, heads):
    k = w[name + "/kernel"]
    return split_heads(linear(x, k.reshape(k.shape[0], -1), w[name + "/bias"].reshape(-1)), heads)


def differential_case(d, dim, heads, hd, t, layer_idx=0, lambda_param=0.8, keep=None, paper=False,
                      lambda_init=0.8):
    b = 2
    x = d.uniform(b, t, dim)
    w1 = branch_weights(d, dim, heads, hd)
    w2 = branch_weights(d, dim, heads, hd)
    wp, bp = d.uniform(dim, dim, scale=0.5), d.uniform(dim, scale=0.2)
    lp = torch.tensor([lambda_param], dtype=torch.float64)
    lp = d.uniform(1) * 0 + lp.to(d.dtype).to(torch.float64)
    lmb = lam(layer_idx, float(lp[0]))
    allowed = None
    if keep is not None:
        allowed = keep[:, None, None, :] if keep.dim() == 2 else keep[:, None]
    outs, ctxs = [], []
    for w in (w1, w2):
        q, k, v = project(x, w, "query", heads), project(x, w, "key", heads), project(x, w, "value", heads)
        if paper:
            v = project(x, w1, "value", heads)
        ctx, _ = sdpa_reference(q, k, v, keep=allowed)
        ctxs.append(ctx)
        ko = w["attention_output/kernel"]
        outs.append(linear(merge_heads(ctx), ko.reshape(-1, dim), w["attention_output/bias"]))
    if not paper:
        y = linear(outs[0] - lmb * outs[1], wp, bp)
    else:
        o = ctxs[0] - lmb * ctxs[1]
        o = o / torch.sqrt((o * o).mean(dim=-1, keepdim=True) + 1e-5) * (1 - lambda_init)
        ko = w1["attention_output/kernel"]
        y = linear(linear(merge_heads(o), ko.reshape(-1, dim), w1["attention_output/bias"]), wp, bp)
    tensors = {"input/x": x}
    if keep is not None:
        tensors["input/mask"] = as_float(keep)
    for prefix, w in (("attention1", w1), ("attention2", w2)):
        for n, t_ in w.items():
            tensors[f"weights/{prefix}/{n}"] = t_
    tensors["weights/proj/kernel"] = wp
    tensors["weights/proj/bias"] = bp
    tensors["weights/lambda_param"] = lp
    tensors["expected/output"] = y
    config = {"dim": dim, "num_heads": heads, "head_dim": hd, "layer_idx": layer_idx}
    if paper:
        config["formulation"] = "paper"
        config["lambda_init"] = lambda_init
    return Case(tensors, config, meta={"lambda": repr(lmb)})


@case("differential", "reference_layer2")
def diff_reference(d):
    return differential_case(d, dim=8, heads=2, hd=3, t=5, layer_idx=2)


@case("differential", "reference_padding_layer0")
def diff_padding(d):
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[1, 4:] = False
    return differential_case(d, dim=6, heads=3, hd=4, t=6, layer_idx=0, lambda_param=0.5, keep=keep)


@case("differential", "paper_mask_fully_masked_row")
def diff_paper(d):
    keep = d.keep(2, 5, 5)
    keep[..., 0] = True
    keep[1, 2, :] = False
    return differential_case(d, dim=8, heads=2, hd=4, t=5, layer_idx=5, keep=keep, paper=True, lambda_init=0.3)
