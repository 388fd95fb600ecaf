// Builds a layer from a JSON config (nlohmann), runs it (Eigen) and prints through fmt: proves the
// target carries every dependency. One layer header, not attn/attn.hpp: the factory instantiates every
// registered type and is compiled by the README's quick-start test and the examples already; two
// consumer builds of it grew with the registry for nothing.
#include <attn/layers/multi_head.hpp>

#include <fmt/format.h>

#include <cmath>

int main() {
  const auto config = attn::Json{{"embed_dim", 8}, {"num_heads", 2}}.get<attn::MultiHeadAttentionConfig>();
  const attn::MultiHeadAttention<float> layer(config);
  attn::Tensor<float, 3> x(1, 3, 8);
  x.setConstant(0.5f);
  const attn::Tensor<float, 3> y = layer.forward(x);
  if (y.dimension(0) != 1 || y.dimension(1) != 3 || y.dimension(2) != 8) return 1;
  for (attn::Index i = 0; i < y.size(); ++i)
    if (!std::isfinite(y.data()[i])) return 2;
  fmt::print("consumer ok\n");
  return 0;
}
