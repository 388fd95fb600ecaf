// Builds a layer through the factory and runs it: proves the target carries every dependency.
#include <attn/attn.hpp>

#include <cmath>
#include <cstdio>

int main() {
  auto layer = attn::create_attention_layer<float>("multi_head", {{"embed_dim", 8}, {"num_heads", 2}});
  attn::Tensor<float, 3> x(1, 3, 8);
  x.setConstant(0.5f);
  const auto y = layer.forward(attn::AnyTensor<float>(x));
  if (y.shape() != attn::Shape{1, 3, 8}) return 1;
  for (float v : y.values())
    if (!std::isfinite(v)) return 2;
  std::puts("consumer ok");
  return 0;
}
