// Shared by the fuzz harnesses: the one entry point each defines, and the rule they enforce — bad input
// may only ever raise an attn::Error; anything else (another exception, a crash, a sanitizer report, a
// hang) is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <typeinfo>

#include <attn/attn.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace attn_fuzz {

/// Process-wide settings of a harness, applied once: quiet logs, one thread, and an allocation limit
/// small enough that every accepted config builds and runs quickly.
inline void setup_once() {
  static const bool done = [] {
    attn::set_log_level(attn::LogLevel::off);
    attn::set_num_threads(1);
    attn::set_allocation_limit(std::size_t(4) << 20);
    return true;
  }();
  (void)done;
}

/// Runs f; an attn::Error is the expected outcome of bad input, anything else aborts (a finding).
template <class F>
void expect_attn_errors_only(const char* what, F&& f) {
  try {
    f();
  } catch (const attn::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: a non-attn exception escaped: %s: %s\n", what, typeid(e).name(), e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "%s: a non-std exception escaped\n", what);
    std::abort();
  }
}

}  // namespace attn_fuzz
