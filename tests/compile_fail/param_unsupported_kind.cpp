// Must NOT compile: a Config member whose type has no parameter-kind trait (float here; the kinds
// are listed in attn/core/param.hpp). tests/CMakeLists.txt compiles this file and expects the
// static_assert's message.
#include <attn/core/param.hpp>

struct FloatMemberConfig {
  float gain = 1.0f;
  static constexpr auto fields() {
    return std::array{attn::Field<FloatMemberConfig>{.name = "gain", .member = attn::member<&FloatMemberConfig::gain>}};
  }
  void check(attn::Problems& /*p*/) const {}
};

int main() { return static_cast<int>(attn::config_to_json(FloatMemberConfig{}).size()); }
