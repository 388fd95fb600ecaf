// The factory's entry points for float and double are instantiated once for the whole test suite, in
// tests/support/factory_{float,double}.cpp: each instantiates every registered layer's forward,
// which made every test file that touched the factory pay for all types (measured with
// tools/compile_times.sh: about 13 s of CPU per such file at 7 types). Included by support.hpp and by
// the precompiled header of attn_tests.
#pragma once

#include <attn/factory.hpp>

#include <cstdint>
#include <string_view>

namespace attn {

#define ATTN_TEST_FACTORY_INSTANCES(EXTERN, T)                                                            \
  EXTERN template AnyLayer<T> create_attention_layer<T>(std::string_view, const Json&, std::string_view, \
                                                        std::uint64_t);                                   \
  EXTERN template AnyLayer<T> create_attention_from_config<T>(const Json&, std::uint64_t);

ATTN_TEST_FACTORY_INSTANCES(extern, float)
ATTN_TEST_FACTORY_INSTANCES(extern, double)

}  // namespace attn
