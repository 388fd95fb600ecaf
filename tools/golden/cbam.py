"""Golden cases of the cbam layer (channel gate, then spatial gate)."""

from common import Case, case, channel_gate, spatial_gate


def cbam_case(d, shape, ratio, ksize, channel_bias, spatial_bias):
    b, h, w, c = shape
    x = d.uniform(*shape)
    t = {"input/x": x}
    k1 = d.uniform(c, c // ratio)
    b1 = d.uniform(c // ratio, scale=0.3) if channel_bias else None
    k2 = d.uniform(c // ratio, c)
    b2 = d.uniform(c, scale=0.3) if channel_bias else None
    ks = d.uniform(ksize, ksize, 2, 1, scale=0.5)
    bs = d.uniform(1, scale=0.3) if spatial_bias else None
    t["weights/channel_attention/channel_attention_dense_1/kernel"] = k1
    if channel_bias:
        t["weights/channel_attention/channel_attention_dense_1/bias"] = b1
    t["weights/channel_attention/channel_attention_dense_2/kernel"] = k2
    if channel_bias:
        t["weights/channel_attention/channel_attention_dense_2/bias"] = b2
    t["weights/spatial_attention/spatial_attention_conv/kernel"] = ks
    if spatial_bias:
        t["weights/spatial_attention/spatial_attention_conv/bias"] = bs
    f1 = x * channel_gate(x, k1, k2, b1, b2)
    t["expected/output"] = f1 * spatial_gate(f1, ks, bs)
    return Case(t, {"channels": c, "ratio": ratio, "kernel_size": ksize, "channel_use_bias": channel_bias,
                    "spatial_use_bias": spatial_bias})


@case("cbam", "k5_biases")
def cbam_biases(d):
    return cbam_case(d, (2, 6, 6, 8), ratio=4, ksize=5, channel_bias=True, spatial_bias=True)


@case("cbam", "k3_defaults")
def cbam_defaults(d):
    return cbam_case(d, (2, 5, 7, 16), ratio=8, ksize=3, channel_bias=False, spatial_bias=True)
