// Configs written for the reference module load unchanged: the examples of its README for the
// types attn registers, and every parameter name of its registry for those types.
#include "support.hpp"

using attn_test::Json;

TEST_CASE("reference configs: the reference README's examples build", "[factory][reference]") {
  // create_attention_layer('multi_head', embed_dim=256, num_heads=8) and the per-type examples
  const std::vector<std::pair<std::string, Json>> examples{
      {"multi_head", {{"embed_dim", 256}, {"num_heads", 8}}},
      {"multi_head", {{"embed_dim", 512}, {"num_heads", 8}, {"dropout_rate", 0.1}}},
      {"cbam", {{"channels", 128}, {"ratio", 16}}},
      {"cbam", {{"channels", 256}, {"ratio", 16}, {"kernel_size", 5}}},
      {"channel", {{"channels", 256}, {"ratio", 16}}},
      {"group_query", {{"d_model", 1024}, {"n_head", 16}, {"n_kv_head", 4}}},
      {"spatial", {{"kernel_size", 5}}},
  };
  for (const auto& [type, params] : examples) {
    INFO(type << " " << params.dump());
    const auto layer = attn::create_attention_layer<float>(type, params);
    REQUIRE(layer.type() == type);
  }
  const Json cfg = {{"type", "group_query"}, {"d_model", 1024}, {"n_head", 16}, {"n_kv_head", 4}, {"name", "gqa_block_1"}};
  REQUIRE(attn::create_attention_from_config<float>(cfg).name() == "gqa_block_1");
}

TEST_CASE("reference configs: every registry parameter name of the reference is accepted", "[factory][reference]") {
  // the reference registry's required + optional names (spec §2.3) for the types attn registers
  const std::vector<std::pair<std::string, std::vector<std::string>>> names{
      {"channel", {"channels", "ratio", "kernel_initializer", "kernel_regularizer", "use_bias"}},
      {"cbam",
       {"channels", "ratio", "kernel_size", "channel_kernel_initializer", "spatial_kernel_initializer",
        "channel_kernel_regularizer", "spatial_kernel_regularizer", "channel_use_bias", "spatial_use_bias"}},
      {"group_query",
       {"d_model", "n_head", "n_kv_head", "max_seq_len", "dropout_rate", "rope_percentage", "rope_theta", "use_bias",
        "kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer"}},
      {"multi_head", {"embed_dim", "num_heads", "dropout_rate", "kernel_initializer", "kernel_regularizer", "use_bias"}},
      {"spatial", {"kernel_size", "kernel_initializer", "kernel_regularizer", "use_bias"}},
  };
  const Json info = attn::get_attention_info();
  for (const auto& [type, list] : names) {
    const Json& e = info.at(type);
    for (const auto& n : list) {
      INFO(type << "." << n);
      const bool known = e.at("optional_params").contains(n) ||
                         std::find(e.at("required_params").begin(), e.at("required_params").end(), n) !=
                             e.at("required_params").end();
      REQUIRE(known);
    }
  }
}
