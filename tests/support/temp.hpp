// Scratch files of the tests. ctest runs the suite as many processes at once (one per test case, and
// the whole suite once per SIMD level), so a fixed file name under the temp directory is shared by
// processes that write, read and remove it at the same time: every path comes from temp_path.
#pragma once

#include <atomic>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>

namespace attn_test {

/// One directory per test process under the system's temp directory, removed with everything in it when
/// the process exits (also after a failed assertion, which skips a test's own clean-up).
struct TempRoot {
  std::filesystem::path dir;
  TempRoot()
      : dir(std::filesystem::temp_directory_path() / ("attn_test_" + std::to_string(std::random_device{}()))) {
    std::filesystem::create_directories(dir);
  }
  TempRoot(const TempRoot&) = delete;
  TempRoot& operator=(const TempRoot&) = delete;
  ~TempRoot() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

/// A path named `name` in a directory of its own: unique per process and per call.
inline std::filesystem::path temp_path(const std::string& name) {
  static const TempRoot root;
  static std::atomic<int> counter{0};
  auto dir = root.dir / std::to_string(counter++);
  std::filesystem::create_directories(dir);
  return dir / name;
}

}  // namespace attn_test
