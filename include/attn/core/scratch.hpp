/// \file
/// Per-thread scratch memory for the temporaries of a forward pass (projections, attention contexts),
/// kept from one call to the next: fresh memory costs a page fault per 4 KiB on first touch, which on a
/// virtual machine is a tenth of a multi-head forward at L = 2048.
///
///   ScratchFrame frame;                 // on the calling thread
///   float* q = frame.get<float>(n);     // uninitialized, 64-byte aligned, valid until `frame` ends
///
/// Frames nest (last in, first out) on a thread; buffers are never shared between threads. A buffer of
/// at most `attn::scratch_limit()` bytes (default 1 GiB, `attn::set_scratch_limit` changes it) stays
/// with its thread for the next frame; a bigger one is freed when its frame ends. So a thread that ran
/// a forward keeps that forward's temporaries (a multi-head layer: 4·B·L·E values) until it runs
/// another or calls `attn::release_scratch()`, which frees what the calling thread keeps outside live
/// frames. The peak memory of a forward is the same either way.
#pragma once

#include <atomic>
#include <cstddef>
#include <new>
#include <utility>
#include <vector>

#include "attn/core/tensor.hpp"

namespace attn {

namespace detail {

inline std::atomic<std::size_t>& scratch_limit_setting() noexcept {
  static std::atomic<std::size_t> bytes{std::size_t(1) << 30};
  return bytes;
}

class ScratchBuffer {
public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ScratchBuffer(ScratchBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  ScratchBuffer& operator=(ScratchBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  ~ScratchBuffer() { reset(); }

  void reset() noexcept {
    if (p_ != nullptr) ::operator delete[](p_, std::align_val_t(64));
    p_ = nullptr;
    bytes_ = 0;
  }
  void* reserve(std::size_t bytes) {
    if (bytes_ < bytes) {
      reset();
      p_ = ::operator new[](bytes, std::align_val_t(64));
      bytes_ = bytes;
    }
    return p_;
  }
  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }

private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

struct ScratchArena {
  std::vector<ScratchBuffer> buffers;
  std::size_t top = 0;  // buffers [0, top) belong to live frames
};

inline ScratchArena& scratch_arena() {
  thread_local ScratchArena arena;
  return arena;
}

}  // namespace detail

/// Scratch buffers up to this many bytes stay with their thread between frames.
[[nodiscard]] inline std::size_t scratch_limit() noexcept { return detail::scratch_limit_setting().load(); }
/// Sets scratch_limit() (0: keep nothing between frames); applies from the next frame end.
inline void set_scratch_limit(std::size_t bytes) noexcept { detail::scratch_limit_setting().store(bytes); }

/// A scope that hands out scratch buffers of the calling thread (see the file comment).
class ScratchFrame {
public:
  ScratchFrame() : arena_(detail::scratch_arena()), base_(arena_.top) {}
  ScratchFrame(const ScratchFrame&) = delete;
  ScratchFrame& operator=(const ScratchFrame&) = delete;
  ~ScratchFrame() {
    const std::size_t limit = scratch_limit();
    for (std::size_t i = base_; i < arena_.top; ++i)
      if (arena_.buffers[i].bytes() > limit) arena_.buffers[i].reset();
    arena_.top = base_;
  }

  /// Room for n values of T (uninitialized), valid until the frame ends.
  template <class T>
  [[nodiscard]] T* get(Index n) {
    const std::size_t bytes = static_cast<std::size_t>(n > 0 ? n : 1) * sizeof(T);
    if (arena_.top == arena_.buffers.size()) arena_.buffers.emplace_back();
    return static_cast<T*>(arena_.buffers[arena_.top++].reserve(bytes));
  }

private:
  detail::ScratchArena& arena_;
  std::size_t base_;
};

/// Frees the scratch buffers the calling thread keeps between frames (those of live frames stay).
inline void release_scratch() noexcept {
  auto& a = detail::scratch_arena();
  for (std::size_t i = a.top; i < a.buffers.size(); ++i) a.buffers[i].reset();
}

}  // namespace attn
