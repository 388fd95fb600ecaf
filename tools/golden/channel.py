"""Golden cases of the channel layer (the CBAM channel gate)."""

from common import Case, case, channel_gate


@case("channel", "bias")
def channel_bias(d):
    x = d.uniform(2, 5, 4, 8)
    k1, b1 = d.uniform(8, 4), d.uniform(4, scale=0.3)
    k2, b2 = d.uniform(4, 8), d.uniform(8, scale=0.3)
    return Case({"input/x": x, "weights/channel_attention_dense_1/kernel": k1,
                 "weights/channel_attention_dense_1/bias": b1, "weights/channel_attention_dense_2/kernel": k2,
                 "weights/channel_attention_dense_2/bias": b2, "expected/output": channel_gate(x, k1, k2, b1, b2)},
                {"channels": 8, "ratio": 2, "use_bias": True})


@case("channel", "no_bias")
def channel_no_bias(d):
    x = d.uniform(3, 3, 6, 16, scale=2.0)
    k1, k2 = d.uniform(16, 4), d.uniform(4, 16)
    return Case({"input/x": x, "weights/channel_attention_dense_1/kernel": k1,
                 "weights/channel_attention_dense_2/kernel": k2, "expected/output": channel_gate(x, k1, k2)},
                {"channels": 16, "ratio": 4})
