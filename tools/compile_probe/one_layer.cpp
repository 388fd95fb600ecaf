// Compile-time probe (not part of the build): a user TU that includes one layer header and runs
// one forward. tools/compile_times.sh compiles it with g++ -O2 and reports CPU time and memory.
#include <attn/layers/multi_head.hpp>

int main() {
  attn::MultiHeadAttention<float> mha({.embed_dim = 64, .num_heads = 4});
  attn::Tensor<float, 3> x(2, 8, 64);
  x.setRandom();
  const attn::Tensor<float, 3> y = mha.forward(x);
  return y.dimension(2) == 64 ? 0 : 1;
}
