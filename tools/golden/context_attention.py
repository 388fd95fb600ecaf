"""Golden cases of the context_attention network: a PyTorch module of nn.Embedding, softmax, an
element-wise product and nn.Linear (weights mapped to Keras layout: the kernel is the transposed
nn.Linear weight)."""

import torch

from common import Case, case


class ContextAttentionNet(torch.nn.Module):
    def __init__(self, num_contexts, input_dim, output_dim, bias):
        super().__init__()
        self.context_embedding = torch.nn.Embedding(num_contexts, input_dim)
        self.output = torch.nn.Linear(input_dim, output_dim, bias=bias)

    def forward(self, x, ids):
        a = torch.softmax(self.context_embedding(ids), dim=-1)
        if x.dim() == 3:
            glimpse = x * a[:, None, :]
        else:
            glimpse = x * a
        return self.output(glimpse), a


def ca_case(d, contexts, din, dout, b, t=None, bias=True):
    net = ContextAttentionNet(contexts, din, dout, bias).to(torch.float64)
    with torch.no_grad():
        net.context_embedding.weight.copy_(d.uniform(contexts, din, scale=2.0))
        net.output.weight.copy_(d.uniform(dout, din))
        if bias:
            net.output.bias.copy_(d.uniform(dout, scale=0.3))
    x = d.uniform(b, din) if t is None else d.uniform(b, t, din)
    ids = torch.tensor([(3 * i + 1) % contexts for i in range(b)], dtype=torch.int64)
    with torch.no_grad():
        y, a = net(x, ids)
    tensors = {"input/x": x, "input/ids": ids.to(torch.float64),
               "weights/context_embedding": net.context_embedding.weight.detach(),
               "weights/output/kernel": net.output.weight.detach().t()}
    if bias:
        tensors["weights/output/bias"] = net.output.bias.detach()
    tensors["expected/output"] = y
    tensors["expected/attention"] = a
    return Case(tensors, {"num_contexts": contexts, "input_dim": din, "output_dim": dout, "use_bias": bias})


@case("context_attention", "vectors")
def ca_vectors(d):
    return ca_case(d, contexts=5, din=6, dout=3, b=4)


@case("context_attention", "sequences_no_bias")
def ca_sequences(d):
    return ca_case(d, contexts=3, din=4, dout=5, b=3, t=2, bias=False)
