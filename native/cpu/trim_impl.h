// Per-row top-k trimming (SPEC §3.3), written once and compiled into each ISA's kernel file so
// the compiler vectorises its loops with that file's flags. The selection is exact whatever the
// ISA (the same entries are kept); only the f64 sum of kept importance may differ in the last
// bits between ISAs, and it is the same from run to run and for any thread count.
#pragma once
#include <cstdint>
#include <cstring>
// Everything here has internal linkage (static / anonymous namespace) and uses no std::
// templates: each ISA file gets its own copy, and the linker can never hand the baseline path a
// copy compiled with AVX-512 flags (COMDAT folding of inline functions and template instances).

namespace geoedit {
namespace {
namespace trim_detail {

// Monotone key for an importance value e >= 0 (-0, negative values and NaN map to 0, the lowest).
inline uint32_t key_of(float e) {
  uint32_t u;
  std::memcpy(&u, &e, 4);
  const uint32_t m = u & 0x7fffffffu;
  return (m > 0x7f800000u || (u >> 31)) ? 0u : m;
}

// The k-th largest key among keys[0..n) by radix select; *ties_kept = how many entries equal to
// it are kept (the lowest indices first). hist: 2048 entries of scratch.
// keys is scratch: it is compacted in place as the prefix narrows.
inline uint32_t radix_kth(uint32_t* keys, int64_t n, int64_t k, uint32_t* hist, int64_t* ties_kept, int64_t* equal) {
  // Bits that every key shares need no pass: start at the highest bit where keys differ (keys
  // drawn from a narrow bracket share many top bits, and a pass over them would pile every key
  // into one histogram bin, serialising the increments).
  uint32_t all_and = 0xffffffffu, all_or = 0;
  for (int64_t j = 0; j < n; ++j) { all_and &= keys[j]; all_or |= keys[j]; }
  const uint32_t diff = all_and ^ all_or;
  if (diff == 0) { *ties_kept = k; *equal = n; return all_and; }
  int start = 32 - __builtin_clz(diff);  // bits [start, 32) are common
  uint64_t prefix = all_and & ~((uint64_t(1) << start) - 1);
  int64_t krem = k;
  while (start > 0) {
    const int width = start < 8 ? start : 8;
    const int shift = start - width;
    const uint32_t dmask = (1u << width) - 1u;
    // every key left in keys[0..n) matches the prefix above `start`
    std::memset(hist, 0, sizeof(uint32_t) * (dmask + 1));
    for (int64_t j = 0; j < n; ++j) hist[(keys[j] >> shift) & dmask]++;
    uint32_t digit = 0;
    for (int64_t d = dmask; d >= 0; --d) {
      if (int64_t(hist[d]) >= krem) { digit = uint32_t(d); break; }
      krem -= hist[d];
    }
    prefix |= uint64_t(digit) << shift;
    // keep only the keys in the chosen bucket (branch-free compaction)
    int64_t m = 0;
    for (int64_t j = 0; j < n; ++j) {
      keys[m] = keys[j];
      m += ((keys[j] >> shift) & dmask) == digit ? 1 : 0;
    }
    n = m;
    start = shift;
  }
  *ties_kept = krem;
  *equal = n;  // what is left after the last digit: exactly the keys equal to the result
  return uint32_t(prefix);
}

// Sum of e^2 in f64 over 8 lanes (every entry kept), and the fixed order the lanes are combined in.
inline void sum_squares8(const float* e, int64_t n, double* acc) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) acc[l] += double(e[j + l]) * double(e[j + l]);
  for (; j < n; ++j) acc[0] += double(e[j]) * double(e[j]);
}
inline double combine8(const double* acc) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Descending order helpers on small arrays (no std:: templates, see above).
inline void sort_desc(uint32_t* x, int64_t n) {
  for (int64_t i = 1; i < n; ++i) {
    const uint32_t v = x[i];
    int64_t j = i - 1;
    while (j >= 0 && x[j] < v) { x[j + 1] = x[j]; --j; }
    x[j + 1] = v;
  }
}
// Rearranges x so that x[m] is the value at rank m in descending order (quickselect).
inline void select_desc(uint32_t* x, int64_t n, int64_t m) {
  int64_t lo = 0, hi = n - 1;
  while (hi > lo) {
    if (hi - lo < 16) { sort_desc(x + lo, hi - lo + 1); return; }
    // median of three pivot
    const int64_t mid = lo + (hi - lo) / 2;
    uint32_t a = x[lo], b = x[mid], c = x[hi];
    const uint32_t pivot = (a > b) ? ((b > c) ? b : (a > c ? c : a)) : ((a > c) ? a : (b > c ? c : b));
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (x[i] > pivot) ++i;
      while (x[j] < pivot) --j;
      if (i <= j) { const uint32_t t = x[i]; x[i] = x[j]; x[j] = t; ++i; --j; }
    }
    if (m <= j) hi = j;
    else if (m >= i) lo = i;
    else return;
  }
}

}  // namespace trim_detail

// The two full passes over a row, overridable per ISA (see kernels_avx512.cc).
struct ScalarTrimPasses {
  // Counts keys > hi, and writes the keys in [lo, hi] to cand (cand needs n + 16 entries).
  static void bracket(const float* e, int64_t n, uint32_t lo, uint32_t hi, uint32_t* cand, int64_t* above, int64_t* nc) {
    int64_t a = 0, c = 0;
    for (int64_t j = 0; j < n; ++j) {
      const uint32_t kj = trim_detail::key_of(e[j]);
      a += kj > hi ? 1 : 0;
      cand[c] = kj;
      c += (kj >= lo && kj <= hi) ? 1 : 0;
    }
    *above = a;
    *nc = c;
  }
  // Zeroes v where the entry is not kept; adds kept e^2 into acc[0..8).
  static void apply(const float* e, float* v, int64_t n, uint32_t kth, int64_t last_tie, double* acc) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      for (int l = 0; l < 8; ++l) {
        const uint32_t kj = trim_detail::key_of(e[j + l]);
        const bool keep = (kj > kth) | ((kj == kth) & (j + l <= last_tie));
        const double ej = double(e[j + l]);
        acc[l] += keep ? ej * ej : 0.0;
        v[j + l] = keep ? v[j + l] : 0.0f;
      }
    }
    for (; j < n; ++j) {
      const uint32_t kj = trim_detail::key_of(e[j]);
      const bool keep = (kj > kth) | ((kj == kth) & (j <= last_tie));
      const double ej = double(e[j]);
      acc[0] += keep ? ej * ej : 0.0;
      v[j] = keep ? v[j] : 0.0f;
    }
  }
};

// Keeps the k entries of v with the largest importance e (ties: lower column index first),
// zeroes the others, and returns the sum over kept entries of e^2 (f64).
// cand: n uint32 of scratch; hist: 2048 uint32 of scratch.
template <typename Passes>
double trim_topk_with(const float* e, float* v, int64_t n, int64_t k, uint32_t* cand, uint32_t* hist) {
  using trim_detail::key_of;
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  auto finish = [&]() { return trim_detail::combine8(acc); };
  if (k >= n) {
    trim_detail::sum_squares8(e, n, acc);
    return finish();
  }
  uint32_t kth = 0;
  int64_t ties_kept = 0;
  int64_t ties_total = -1;  // how many keys equal kth (-1: not known yet)
  bool found = false;
  // 1. Estimate a bracket [lo, hi] around the k-th largest key from a strided sample, then
  //    count the keys above it and collect the ones inside it (usually a few percent of n).
  const int64_t S = 128;
  if (n >= 4 * S) {
    uint32_t sample[S];
    const int64_t stride = n / S;
    for (int64_t s = 0; s < S; ++s) sample[s] = key_of(e[s * stride]);
    const int64_t p = (k * S) / n;
    const int64_t margin = 10;
    // Only two order statistics of the sample are needed: select them (O(S)), don't sort.
    uint32_t lo = 0u, hi = 0xffffffffu;
    if (p + margin < S) {
      trim_detail::select_desc(sample, S, p + margin);
      lo = sample[p + margin];
    }
    if (p - margin >= 0) {
      trim_detail::select_desc(sample, p + margin < S ? p + margin : S, p - margin);
      hi = sample[p - margin];
    }
    int64_t above = 0, nc = 0;
    Passes::bracket(e, n, lo, hi, cand, &above, &nc);
    const int64_t need = k - above;
    if (need >= 1 && need <= nc) {
      // the need-th largest candidate, by radix select (histograms: no data-dependent branches)
      // every key equal to kth lies inside [lo, hi], so ties_total counts them all
      kth = trim_detail::radix_kth(cand, nc, need, hist, &ties_kept, &ties_total);
      found = true;
    }
  }
  if (!found) {
    for (int64_t j = 0; j < n; ++j) cand[j] = key_of(e[j]);
    kth = trim_detail::radix_kth(cand, n, k, hist, &ties_kept, &ties_total);
  }
  // 2. Where ties at the threshold are not all kept, find the column of the last kept tie.
  int64_t last_tie = n;  // keep every tie by default
  {
    int64_t seen = 0, total = ties_total;
    if (total < 0) {
      total = 0;
      for (int64_t j = 0; j < n; ++j) total += key_of(e[j]) == kth ? 1 : 0;
    }
    if (total > ties_kept) {
      last_tie = -1;
      for (int64_t j = 0; j < n && seen < ties_kept; ++j)
        if (key_of(e[j]) == kth) { ++seen; last_tie = j; }
    }
  }
  // 3. Apply the mask and sum the kept importance (branch-free).
  Passes::apply(e, v, n, kth, last_tie, acc);
  return finish();
}

[[maybe_unused]] double trim_topk_impl(const float* e, float* v, int64_t n, int64_t k, uint32_t* cand, uint32_t* hist) {
  return trim_topk_with<ScalarTrimPasses>(e, v, n, k, cand, hist);
}

// The magnitude importance, by definition: e = |v|, then trim.
[[maybe_unused]] double trim_mag_impl(float* v, int64_t n, int64_t k, uint32_t* cand, uint32_t* hist, float* e, TrimHint* = nullptr) {
  for (int64_t j = 0; j < n; ++j) e[j] = __builtin_fabsf(v[j]);
  return trim_topk_with<ScalarTrimPasses>(e, v, n, k, cand, hist);
}

}  // namespace
}  // namespace geoedit
