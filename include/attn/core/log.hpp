/// \file
/// Logging through fmt with a replaceable sink. Quiet by default (warnings and errors only).
///
///   attn::set_log_level(attn::LogLevel::info);                 // show the factory's INFO lines
///   attn::set_log_sink([](attn::LogLevel l, std::string_view m) { ... });   // route elsewhere
///   attn::set_log_sink(nullptr);                                // back to stderr
#pragma once

#include <atomic>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace attn {

enum class LogLevel { debug = 0, info = 1, warning = 2, error = 3, off = 4 };

/// "DEBUG", "INFO", "WARNING", "ERROR", "OFF"
constexpr std::string_view log_level_name(LogLevel l) noexcept {
  switch (l) {
    case LogLevel::debug: return "DEBUG";
    case LogLevel::info: return "INFO";
    case LogLevel::warning: return "WARNING";
    case LogLevel::error: return "ERROR";
    case LogLevel::off: return "OFF";
  }
  return "?";
}

using LogSink = std::function<void(LogLevel, std::string_view)>;

namespace detail {
struct LogState {
  std::atomic<LogLevel> level{LogLevel::warning};
  std::mutex mutex;
  LogSink sink;
};
inline LogState& log_state() {
  static LogState state;
  return state;
}
}  // namespace detail

/// Messages below `level` are dropped before they are formatted.
inline void set_log_level(LogLevel level) noexcept { detail::log_state().level = level; }
inline LogLevel log_level() noexcept { return detail::log_state().level; }

/// Replaces the sink (nullptr restores the default: "LEVEL message" lines on stderr).
inline void set_log_sink(LogSink sink) {
  auto& s = detail::log_state();
  std::lock_guard lock(s.mutex);
  s.sink = std::move(sink);
}

inline bool log_enabled(LogLevel level) noexcept {
  return level != LogLevel::off && level >= log_level();
}

/// Sends an already formatted message to the sink when `level` is enabled.
inline void log_message(LogLevel level, std::string_view message) {
  if (!log_enabled(level)) return;
  auto& s = detail::log_state();
  std::lock_guard lock(s.mutex);
  if (s.sink) {
    s.sink(level, message);
  } else {
    fmt::print(stderr, "{} {}\n", log_level_name(level), message);
  }
}

template <class... Args>
void log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (!log_enabled(level)) return;
  log_message(level, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace attn
