// Fuzz harness: the JSON config factory. Input bytes are a JSON config (as a user's file would hold);
// each one goes through check_attention_config, create_attention_from_config, a forward on the type's
// small example input, and the config() round trip. Only attn::Error may come out; a layer that was
// built must run, give the declared output shape, and rebuild from its config() to an equal config.
#include "harness.hpp"

#include <string>
#include <vector>

namespace {

template <class T>
void run(const attn::Json& cfg) {
  const auto layer = attn::create_attention_from_config<T>(cfg, 1);
  // The round trip: the config of a built layer builds a layer with an equal config.
  const attn::Json back = layer.config();
  const auto again = attn::create_attention_from_config<T>(back, 1);
  if (again.config() != back || !(again == layer)) {
    std::fprintf(stderr, "config round trip differs:\n%s\n%s\n", back.dump().c_str(), again.config().dump().c_str());
    std::abort();
  }
  // A forward on the type's example input shapes.
  std::vector<attn::Shape> shapes;
  attn::visit_layer<T>(layer.type(), [&]<class L>() {
    shapes = L::example_input_shapes(layer.template target<L>()->config());
  });
  // Inputs beyond 2^16 elements (a context_dim of 10^5 makes the example context that big) are for the
  // benchmarks: under the sanitizers they take seconds and say nothing new about bad input.
  attn::Index elements = 0;
  for (const auto& s : shapes) elements += attn::shape_size(s);
  if (elements > (attn::Index(1) << 16)) return;
  std::vector<attn::AnyTensor<T>> in;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    attn::AnyTensor<T> x(shapes[i]);
    for (attn::Index j = 0; j < x.size(); ++j) x.data()[j] = static_cast<T>(((j * 37 + i * 11) % 17) - 8) / T(8);
    in.push_back(std::move(x));
  }
  const auto y = layer.forward(in);
  if (y.shape() != layer.output_shape(shapes)) {
    std::fprintf(stderr, "forward shape differs from output_shape\n");
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  attn_fuzz::setup_once();
  const std::string text(reinterpret_cast<const char*>(data), size);
  const attn::Json cfg = attn::Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (cfg.is_discarded()) return 0;
  attn_fuzz::expect_attn_errors_only("check_attention_config", [&] {
    if (cfg.is_object() && cfg.contains("type") && cfg["type"].is_string()) {
      attn::Json params = cfg;
      params.erase("type");
      params.erase("name");
      (void)attn::check_attention_config(cfg["type"].get<std::string>(), params);
    }
  });
  attn_fuzz::expect_attn_errors_only("create/forward float", [&] { run<float>(cfg); });
  attn_fuzz::expect_attn_errors_only("create/forward double", [&] { run<double>(cfg); });
  return 0;
}
