// Compile-time probe (not part of the build): a user TU that includes attn/attn.hpp and builds one
// layer through the factory (which instantiates every registered type for float).
#include <attn/attn.hpp>

int main() {
  auto layer = attn::create_attention_layer<float>("multi_head", {{"embed_dim", 64}, {"num_heads", 4}});
  attn::Tensor<float, 3> x(2, 8, 64);
  x.setRandom();
  const attn::AnyTensor<float> y = layer.forward(attn::AnyTensor<float>(x));
  return y.shape()[2] == 64 ? 0 : 1;
}
