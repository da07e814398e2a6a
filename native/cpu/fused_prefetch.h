// The fused row path's prefetch (geoedit.h fused_prefetch_next), shared by the ISA files that have a fused
// path (kernels_avx2.cc, kernels_avx512.cc): by default the stats pass prefetches a fixed distance ahead
// within the row into L1. With the switch on, and where the three input rows fit the L2 with room to
// spare, both passes prefetch the NEXT row into L2 instead (rows of one thread are consecutive in memory),
// 16 columns' bytes per 32 columns (the stats pass the first half of the row, the output pass the second),
// so the memory stream goes on while a row is computed on. Prefetches never fault: past the tensor's end
// they fetch a few useless lines. Internal linkage (see trim_impl.h).
#pragma once
#include <xmmintrin.h>
#include <cstdint>
#include "geoedit/geoedit.h"

namespace geoedit {
namespace {

inline bool next_row_fits(int64_t n, int64_t es) { return 3 * n * es <= (int64_t(256) << 10) && fused_prefetch_next(); }
inline void next_row_prefetch(const void* b, const void* o, const void* w, int64_t off) {
  _mm_prefetch(static_cast<const char*>(b) + off, _MM_HINT_T1);
  _mm_prefetch(static_cast<const char*>(o) + off, _MM_HINT_T1);
  _mm_prefetch(static_cast<const char*>(w) + off, _MM_HINT_T1);
}

// The stats pass's prefetch for its block of 32 columns at column j (es: bytes per element): the next row
// (next: next_row_fits) or `ahead` elements further on in this row, into L1. Past the row's end this reaches
// into the next row; a prefetch never faults.
inline void stats_prefetch(bool next, const char* pb, const char* po, const char* pn, int64_t n, int64_t j, int64_t es) {
  constexpr int64_t ahead = 256;  // elements: keeps more lines in flight than the OoO window would
  if (next) {
    next_row_prefetch(pb, po, pn, n * es + j * es / 2);
    return;
  }
  for (int64_t l = 0; l < 32 * es; l += 64) {
    _mm_prefetch(pb + (j + ahead) * es + l, _MM_HINT_T0);
    _mm_prefetch(po + (j + ahead) * es + l, _MM_HINT_T0);
    _mm_prefetch(pn + (j + ahead) * es + l, _MM_HINT_T0);
  }
}

}  // namespace
}  // namespace geoedit
