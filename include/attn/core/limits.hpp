/// \file
/// The allocation limit: the most memory (in bytes) attn allocates for what a configuration or an
/// argument asks for — a layer's weights and tables together, a RoPE table, a mask built by a helper —
/// before allocating any of it. A configuration that passes validation can still ask for far more
/// memory than exists (`group_query` with `max_seq_len` 2^31 - 1 asks for two 8 GiB tables, `spatial`
/// with `kernel_size` 99999 for 80 GB, `multi_head` with `embed_dim` 10^9 for 10^19 bytes); such a
/// request is refused with an attn::ConfigError naming the layer, the parameter that sets the size and
/// the bytes, instead of a std::bad_alloc, a std::length_error or an exhausted machine.
///
///   attn::set_allocation_limit(std::size_t(16) << 30);   // allow up to 16 GiB per layer
///   attn::allocation_limit();                            // the limit in force
///
/// Default: 4 GiB (`attn::default_allocation_limit`), above the weights of any single attention layer
/// of today's large models in float (d_model 8192: about 1 GiB). The setting is process-wide and
/// atomic; it is read when the allocation is decided (a layer's construction or `reset_parameters`).
/// Sizes are computed with overflow checks, so an element count beyond 2^63 is refused the same way.
/// Memory that follows from the size of the caller's own input (a forward's temporaries, the [B, H, T,
/// S] attention weights the caller asked for) is not limited here; see core/scratch.hpp for what stays
/// allocated between calls.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/tensor.hpp"

namespace attn {

/// The default allocation limit: 4 GiB.
inline constexpr std::size_t default_allocation_limit = std::size_t(4) << 30;

namespace detail {
inline std::atomic<std::size_t>& allocation_limit_setting() noexcept {
  static std::atomic<std::size_t> bytes{default_allocation_limit};
  return bytes;
}
}  // namespace detail

/// The allocation limit in bytes (see the file comment).
[[nodiscard]] inline std::size_t allocation_limit() noexcept {
  return detail::allocation_limit_setting().load(std::memory_order_relaxed);
}

/// Sets the allocation limit in bytes (process-wide). `std::numeric_limits<std::size_t>::max()` turns
/// the check off (overflowing sizes are still refused).
inline void set_allocation_limit(std::size_t bytes) noexcept {
  detail::allocation_limit_setting().store(bytes, std::memory_order_relaxed);
}

/// `count · elem_size` in bytes, or nothing on overflow (or a negative count).
[[nodiscard]] inline std::optional<std::size_t> checked_bytes(Index count, std::size_t elem_size) noexcept {
  if (count < 0) return std::nullopt;
  const auto n = static_cast<std::size_t>(count);
  if (elem_size != 0 && n > std::numeric_limits<std::size_t>::max() / elem_size) return std::nullopt;
  return n * elem_size;
}

/// Bytes as "N bytes (x.y GiB)" for messages; "more than 2^64 bytes" for an overflow.
[[nodiscard]] inline std::string bytes_str(std::optional<std::size_t> bytes) {
  if (!bytes) return "more than 2^64 bytes";
  return fmt::format("{} bytes ({:.3g} GiB)", *bytes, static_cast<double>(*bytes) / double(1 << 30));
}

/// Throws ConfigError unless `count` elements of `elem_size` bytes fit the allocation limit. `what`
/// starts the message (e.g. "group_query: parameter 'max_seq_len' (2147483647): the RoPE tables").
inline void check_allocation(std::string_view what, std::optional<Index> count, std::size_t elem_size,
                             std::string type = {}, std::string parameter = {}) {
  const std::optional<std::size_t> bytes = count ? checked_bytes(*count, elem_size) : std::nullopt;
  if (bytes && *bytes <= allocation_limit()) return;
  throw ConfigError(fmt::format("{} would take {}, above the allocation limit of {} (attn::set_allocation_limit "
                                "raises it)",
                                what, bytes_str(bytes), bytes_str(allocation_limit())),
                    std::move(type), std::move(parameter));
}

}  // namespace attn
