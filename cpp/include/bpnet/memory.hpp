// bpnet core, floor 2: 64-byte aligned buffers.
//
// Every buffer, and every sub-buffer of a block buffer, starts on a 64-byte
// boundary: Eigen's vectorized loops peel a different number of leading
// scalars at a different alignment, which changes the order of the additions
// in a reduction. With a fixed alignment the bits of a block's result do not
// depend on which worker's buffer it ran in.
#pragma once

#include <cstdlib>
#include <memory>
#include <new>

#include "shape.hpp"

namespace bpnet {

constexpr Index kAlignBytes = 64;

template <typename T>
Index padded(Index n) {  // n elements rounded up to whole 64-byte lines
  constexpr Index per_line = kAlignBytes / static_cast<Index>(sizeof(T));
  return (n + per_line - 1) / per_line * per_line;
}

template <typename T>
class AlignedBuffer {
 public:
  T* data() { return ptr_.get(); }
  Index size() const { return size_; }
  void resize(Index n) {  // contents are not kept
    if (n <= size_) return;
    const std::size_t bytes = static_cast<std::size_t>(padded<T>(n)) * sizeof(T);
    T* p = static_cast<T*>(std::aligned_alloc(kAlignBytes, bytes));
    if (!p) throw std::bad_alloc();
    ptr_.reset(p);
    size_ = padded<T>(n);
  }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> ptr_;
  Index size_ = 0;
};

}  // namespace bpnet
