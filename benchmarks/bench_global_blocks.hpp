// Shapes and work counts of the global attention blocks' benchmarks, shared by attn_bench_global_blocks
// and the libtorch sibling (bench_torch.cpp): the matrix products of one forward at B = 8, 2 flops per
// multiply-add (projections, Q·Kᵀ, P·V, and BoTNet's position logits q·r_height, q·r_width; not CMT's
// depthwise reduction, 2·B·C·H·W flops, under 0.3% of its count).
#pragma once

#include <cstdint>

namespace attn_bench {

enum class GlobalBlock { xca, botnet, coatnet, levit_subsample, cmt };

inline constexpr std::int64_t kGlobalBatch = 8;

inline double global_block_flops(GlobalBlock which) {
  const double b = double(kGlobalBatch);
  switch (which) {
    case GlobalBlock::xca: {  // 28x28x160, 4 heads of 40: qkv, output, Q̂·K̂ᵀ and A·V over channels
      const double m = b * 28 * 28, c = 160, d = 40;
      return 2 * m * c * 3 * c + 2 * m * c * c + 2 * 2 * m * d * c;
    }
    case GlobalBlock::botnet: {  // 14x14x1024, 4 heads of 256, no output projection
      const double n = 14 * 14, m = b * n, c = 1024, h = 4, d = 256;
      return 2 * m * c * 3 * c + 2 * 2 * m * n * c + 2 * m * h * d * (27 + 27);
    }
    case GlobalBlock::coatnet: {  // 14x14x384, 12 heads of 32
      const double n = 14 * 14, m = b * n, c = 384;
      return 2 * m * c * 3 * c + 2 * m * c * c + 2 * 2 * m * n * c;
    }
    case GlobalBlock::levit_subsample: {  // 14x14x256 -> 7x7x384, 16 heads of 16, attn_ratio 4
      const double n = 14 * 14, nq = 7 * 7, c = 256, hd = 16 * 16, r = 4, o = 384;
      return b * (2 * nq * c * hd + 2 * n * c * (r + 1) * hd + 2 * nq * n * hd + 2 * nq * n * r * hd +
                  2 * nq * r * hd * o);
    }
    case GlobalBlock::cmt: {  // 28x28x128, 2 heads of 64, sr_ratio 4: keys and values on 7x7
      const double n = 28 * 28, nk = 7 * 7, m = b * n, c = 128;
      return 2 * m * c * c + 2 * b * nk * c * 2 * c + 2 * 2 * m * nk * c + 2 * m * c * c;
    }
  }
  return 0;
}

}  // namespace attn_bench
