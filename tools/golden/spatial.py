"""Golden cases of the spatial layer (the CBAM spatial gate)."""

from common import Case, case, spatial_gate


@case("spatial", "k3_bias")
def spatial_k3(d):
    x = d.uniform(2, 6, 5, 3)
    k, b = d.uniform(3, 3, 2, 1), d.uniform(1, scale=0.3)
    return Case({"input/x": x, "weights/spatial_attention_conv/kernel": k, "weights/spatial_attention_conv/bias": b,
                 "expected/output": spatial_gate(x, k, b)}, {"kernel_size": 3})


@case("spatial", "k7_larger_than_width_no_bias")
def spatial_k7(d):
    x = d.uniform(2, 6, 5, 4)
    k = d.uniform(7, 7, 2, 1, scale=0.5)
    return Case({"input/x": x, "weights/spatial_attention_conv/kernel": k, "expected/output": spatial_gate(x, k)},
                {"kernel_size": 7, "use_bias": False})


@case("spatial", "k3x5_bias")
def spatial_rect(d):
    x = d.uniform(1, 4, 7, 2)
    k, b = d.uniform(3, 5, 2, 1, scale=0.5), d.uniform(1, scale=0.3)
    return Case({"input/x": x, "weights/spatial_attention_conv/kernel": k, "weights/spatial_attention_conv/bias": b,
                 "expected/output": spatial_gate(x, k, b)}, {"kernel_size": [3, 5]})
