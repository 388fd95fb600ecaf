// Fuzz harness: the safetensors reader and load_weights. Input bytes are a whole file. The reader must
// accept it or throw attn::IOError; every accepted tensor is converted (attn::Error allowed, e.g. a
// dtype that does not convert); then the file is loaded into one small layer of every type, with and
// without allow_extra and under the prefixes "" and "m". Only attn::Error may come out, and a failed
// load must leave the layer unchanged.
#include "harness.hpp"

#include <cstring>
#include <vector>

namespace {

template <class L>
void load_into(L& layer, const attn::SafeTensors& file) {
  for (const char* prefix : {"", "m"})
    for (bool extra : {false, true}) {
      const auto before = layer.parameters();
      bool loaded = false;
      attn_fuzz::expect_attn_errors_only("load_weights", [&] {
        attn::load_weights(layer, file, prefix, {.allow_extra = extra});
        loaded = true;
      });
      if (!loaded) {
        const auto& after = layer.parameters();
        bool same = after.size() == before.size();
        for (std::size_t i = 0; same && i < after.size(); ++i)
          same = after[i].shape == before[i].shape && after[i].data.size() == before[i].data.size() &&
                 std::memcmp(after[i].data.data(), before[i].data.data(),  // bitwise: NaN loads happen
                             after[i].data.size() * sizeof(after[i].data[0])) == 0;
        if (!same) {
          std::fprintf(stderr, "a failed load changed the layer\n");
          std::abort();
        }
      }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  attn_fuzz::setup_once();
  attn::SafeTensors file;
  bool ok = false;
  attn_fuzz::expect_attn_errors_only("SafeTensors::from_bytes", [&] {
    file = attn::SafeTensors::from_bytes(std::vector<std::uint8_t>(data, data + size), "fuzz.safetensors");
    ok = true;
  });
  if (!ok) return 0;
  for (const auto& e : file.entries()) {
    attn_fuzz::expect_attn_errors_only("values<float>", [&] { (void)file.tensor<float>(e.name); });
    attn_fuzz::expect_attn_errors_only("values<double>", [&] { (void)file.values<double>(e.name); });
  }
  static attn::MultiHeadAttention<float> mha({.embed_dim = 4, .num_heads = 2});
  static attn::GroupedQueryAttention<float> gqa({.d_model = 4, .n_head = 2, .n_kv_head = 1, .max_seq_len = 4});
  static attn::CBAM<float> cbam({.channels = 4, .ratio = 2, .kernel_size = attn::Size2{3, 3}});
  static attn::CrossAttention<double> cross({.embed_dim = 4, .context_dim = 2, .num_heads = 2, .output_projection = true});
  load_into(mha, file);
  load_into(gqa, file);
  load_into(cbam, file);
  load_into(cross, file);
  return 0;
}
