// drop_block: the identity at inference (bit-exact), the kept parameter, validation messages, shape
// errors; golden data from torch.nn.functional.dropout(training=False).
#include <attn/layers/drop_block.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::DropBlock<double>;

TEST_CASE("drop_block: the identity at inference, the rate kept", "[drop_block]") {
  const L a({.drop_rate = 0.5});
  REQUIRE(a.parameters().size() == 0);
  const auto x = random_tensor<double, 4>({2, 3, 4, 5}, 1);
  ATTN_REQUIRE_CLOSE(a.forward(x), x, 0.0, 0.0);
  const auto any = attn::create_attention_layer<double>("drop_block", {{"drop_rate", 0.2}});
  REQUIRE(any.config().at("drop_rate") == 0.2);
}

TEST_CASE("drop_block: validation messages and shape errors", "[drop_block]") {
  REQUIRE_THROWS_WITH(L({.drop_rate = 1.0}), "drop_rate must be in [0, 1), got 1.0");
  REQUIRE_THROWS_WITH(L({.drop_rate = -0.1}), "drop_rate must be in [0, 1), got -0.1");
  REQUIRE_THROWS_AS(L({.drop_rate = 1.0}), attn::ConfigError);
  REQUIRE_THROWS_WITH(L({}).output_shape({2, 3, 4}),
                      "drop_block: input x must have rank 4 [batch, height, width, channels], got shape [2, 3, 4]");
  REQUIRE(L({}).forward(attn::Tensor<double, 4>(0, 3, 3, 4)).size() == 0);
}

TEMPLATE_TEST_CASE("golden: drop_block matches torch dropout at inference", "[golden][drop_block]", float, double) {
  using T = TestType;
  for_each_golden<T>("drop_block", [](const Golden& g) {
    attn::DropBlock<T> layer(g.config.get<attn::DropBlockConfig>());
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
