// The fused stats pass's software prefetch, shared by the ISA files that have a fused row path
// (kernels_avx2.cc, kernels_avx512.cc): a fixed distance (256 elements) ahead within the row into L1; past
// the row's end that reaches into the next row (a prefetch never faults). A next-row L2 prefetch during
// every pass was tried as an A/B switch and measured 0.87-1.12x (docs/performance.md, "bf16 fused kernels,
// second round"): removed; the row pipeline now prepares the next row instead, during the select and the output
// pass only (kernels.h NextRowStats; StatsPass::block and RawDiff in the ISA files). Internal linkage (see
// trim_impl.h).
#pragma once
#include <xmmintrin.h>
#include <cstdint>

namespace geoedit {
namespace {

// For the stats pass's block of 32 columns at column j (es: bytes per element). always_inline: GCC 12 drops
// the prefetches of a plain inline function inlined into an always_inline one (kernels' StatsPass::step).
__attribute__((always_inline)) inline void stats_prefetch(const char* pb, const char* po, const char* pn, int64_t j, int64_t es) {
  constexpr int64_t ahead = 256;  // elements: keeps more lines in flight than the OoO window would
  for (int64_t l = 0; l < 32 * es; l += 64) {
    _mm_prefetch(pb + (j + ahead) * es + l, _MM_HINT_T0);
    _mm_prefetch(po + (j + ahead) * es + l, _MM_HINT_T0);
    _mm_prefetch(pn + (j + ahead) * es + l, _MM_HINT_T0);
  }
}

}  // namespace
}  // namespace geoedit
