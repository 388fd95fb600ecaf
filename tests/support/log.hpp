// Capture of attn's log lines in tests (core/log.hpp).
#pragma once

#include <attn/core/log.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace attn_test {

/// Collects attn's log lines ("LEVEL message") while alive, at every level.
struct LogLines {
  attn::LogLevel saved = attn::log_level();
  explicit LogLines(std::vector<std::string>& lines) {
    attn::set_log_level(attn::LogLevel::debug);
    attn::set_log_sink([&lines](attn::LogLevel l, std::string_view m) {
      lines.push_back(std::string(attn::log_level_name(l)) + " " + std::string(m));
    });
  }
  LogLines(const LogLines&) = delete;
  LogLines& operator=(const LogLines&) = delete;
  ~LogLines() {
    attn::set_log_sink(nullptr);
    attn::set_log_level(saved);
  }
};

}  // namespace attn_test
