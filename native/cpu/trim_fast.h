// The vectorised top-k select (SPEC §3.3) of the AVX2 and AVX-512 kernels: the same kept entries
// as the scalar reference (trim_impl.h), found with vector compares instead of scalar histograms.
//   1. A strided sample of 128 keys gives a bracket [lo, hi] around the k-th largest key (its two
//      order statistics are found by a bit-by-bit search with vector counts: no sorting, no
//      data-dependent branches).
//   2. One pass over the row counts the keys above hi and compresses the keys inside the bracket
//      into `cand` (about 16% of the row).
//   3. The k-th largest candidate is found bit by bit (vector counts), the candidate set being
//      compacted to the current bucket every few bits, so it shrinks geometrically.
//   4. Where ties at the threshold are not all kept, the column of the last kept tie is found
//      with vector equality counts; then one pass zeroes the dropped entries and sums the kept e^2.
// If the bracket misses (the sample was unlucky), step 3 runs over every key of the row: slower,
// still exact. Keys are those of trim_detail::key_of: -0, negatives and NaN map to 0.
// `Mag` kernels take the importance as |v| without a separate importance row (the default).
//
// P (the ISA) provides, each templated on Mag where it reads the row:
//   count_ge(c, n, t)                 #{c[j] >= t}
//   sample_bracket(s, rh, rl, &hi, &lo)  s: 128 keys; for rank r = rh (if >= 1) and rl (if <= 128),
//                                     the r-th largest key's top 14 bits t: hi = t | 0x3ffff, lo = t
//   kSmall, small_rth(c, n, r, &gt, &eq)  the r-th largest of n <= kSmall keys, #{> it}, #{== it}
//   compact(c, n, lo, hi)             keeps c[j] in [lo, hi] in place (order kept), returns how many
//   bracket<Mag>(x, n, lo, hi, cand, &above, &nc)   as ScalarTrimPasses::bracket, but cand gets the
//                                     offsets k - lo (hi is first clamped to +inf, lo to <= hi)
//   keys<Mag>(x, n, cand)             cand[j] = key of x[j]
//   nth_equal<Mag>(x, n, kth, r)      the column of the r-th (1-based) key equal to kth
// where x is the row: a const float*, or (select_fast only) any row source the ISA's passes read, e.g.
// the fused paths' v = x - base decoded from the raw input rows (RawDiff in kernels_avx512.cc and
// kernels_avx2.cc).
//   apply<Mag>(x, v, n, kth, last_tie, acc)  as ScalarTrimPasses::apply (x: e, or v when Mag)
// Internal linkage, no std:: templates (see trim_impl.h).
#pragma once
#include "trim_impl.h"

namespace geoedit {
namespace {
namespace trim_fast_detail {

// The r-th largest (1-based) of c[0..n): the largest t with #{c >= t} >= r, bit by bit from the
// highest bit where lo and hi differ (every c[j] is in [lo, hi]); compacts c to the current bucket
// every 4 bits while it is large. Returns the value; *gt = #{c > value}, *eq = #{c == value} (over
// the original set).
template <class P>
uint32_t select_rth(uint32_t* c, int64_t n, int64_t r, uint32_t lo, uint32_t hi, int64_t* gt, int64_t* eq) {
  const uint32_t diff = lo ^ hi;
  uint32_t prefix = lo & hi;  // bits above the highest differing one are common (lo <= hi)
  int64_t dropped_above = 0;  // keys above the current bucket removed by compaction
  if (diff != 0) {
    int b = 31 - __builtin_clz(diff);
    prefix &= ~((b == 31 ? 0xffffffffu : ((2u << b) - 1u)));
    int since = 0;
    for (; b >= 0 && n > P::kSmall; --b) {
      const uint32_t t = prefix | (1u << b);
      if (P::count_ge(c, n, t) + dropped_above >= r) prefix = t;
      if (++since == 4 && b > 0) {
        // bits >= b are decided: the bucket is [prefix, prefix + 2^b - 1]
        since = 0;
        const uint32_t top = prefix + ((1u << b) - 1u);
        dropped_above += top == 0xffffffffu ? 0 : P::count_ge(c, n, top + 1u);
        n = P::compact(c, n, prefix, top);
      }
    }
    if (b >= 0) {
      // a few keys left (the dropped ones are all above the result): rank them against each other
      int64_t g = 0, e = 0;
      const uint32_t v = P::small_rth(c, n, r - dropped_above, &g, &e);
      *gt = g + dropped_above;
      *eq = e;
      return v;
    }
  }
  const int64_t ge = P::count_ge(c, n, prefix) + dropped_above;
  const int64_t g = (prefix == 0xffffffffu ? 0 : P::count_ge(c, n, prefix + 1u)) + dropped_above;
  *gt = g;
  *eq = ge - g;
  return prefix;
}

// The sample's two order statistics (sample_bracket of the passes): for ranks rh and rl, the top 13
// key bits (30..18) of the rh-th and rl-th largest of 128 keys, found bit by bit from
// count(t) = #{keys >= t} (the two searches interleaved for their latency); hi rounded up to the
// end of its bucket, lo down, so the bracket only widens. rh < 1 or rl > 128 leave that side.
template <class Count>
void sample_search(Count count, int64_t rh, int64_t rl, uint32_t* hi, uint32_t* lo) {
  uint32_t ph = 0, pl = 0;
  for (int b = 30; b >= 18; --b) {
    const uint32_t th = ph | (1u << b), tl = pl | (1u << b);
    ph = count(th) >= rh ? th : ph;
    pl = count(tl) >= rl ? tl : pl;
  }
  if (rh >= 1) *hi = ph | 0x3ffffu;
  if (rl <= 128) *lo = pl;
}

}  // namespace trim_fast_detail

// Where the kept entries of a select end: keep column j iff key > kth, or key == kth and j <= last_tie.
struct FastSelection {
  uint32_t kth;
  int64_t last_tie;
};

inline float sample_at(const float* x, int64_t j) { return x[j]; }

// The selection of trim_fast (1 <= k < n): the k-th largest key and the last kept tie. x is the
// importance row (a const float*) or any row source the passes P accept (an ISA file may read the
// values from the raw input rows instead of a decoded copy; sample_at(x, j) gives one value).
template <class P, bool Mag, class Src>
FastSelection select_fast(const Src& x, int64_t n, int64_t k, uint32_t* cand, TrimHint* hint) {
  using trim_detail::key_of;
  const uint32_t kMaxKey = 0x7f800000u;  // +inf: no key is larger
  uint32_t kth = 0;
  int64_t gt = 0, eq = 0;
  bool found = false;
  const int64_t S = 128;
  // The bracket [lo, hi] of one try: one pass counts the keys above it and collects the ones inside;
  // the need-th largest candidate is the result when it lies inside (every key equal to it does then).
  auto try_bracket = [&](uint32_t lo, uint32_t hi) {
    int64_t above = 0, nc = 0;
    P::template bracket<Mag>(x, n, lo, hi, cand, &above, &nc);
    const int64_t need = k - above;
    if (need < 1 || need > nc) return false;
    // cand holds offsets k - lo (in [0, hi - lo])
    kth = lo + trim_fast_detail::select_rth<P>(cand, nc, need, 0u, (hi > kMaxKey ? kMaxKey : hi) - lo, &gt, &eq);
    gt += above;
    return true;
  };
  // 0. The previous row's threshold, scaled by the RMS ratio: a bracket of +-6% around it.
  const bool hinted = hint && hint->rel > 0 && hint->rms > 0 && hint->rel * hint->rms < 3e38f && n >= 4 * S;
  if (hinted) {
    const float g = hint->rel * hint->rms;
    found = try_bracket(key_of(g * 0.94f), key_of(g * 1.06f));
  }
  if (!found && n >= 4 * S && k >= 1) {
    alignas(64) uint32_t sample[S + 16];
    const int64_t stride = n / S;
    for (int64_t s = 0; s < S; ++s) {
      const float xs = sample_at(x, s * stride);
      sample[s] = key_of(Mag ? __builtin_fabsf(xs) : xs);
    }
    const int64_t p = (k * S) / n, margin = 10;
    // ranks p - margin and p + margin (0-based, descending) of the sample, to 1/32 of an octave:
    // hi rounded up and lo down, so the bracket only widens
    uint32_t hi = kMaxKey, lo = 0u;
    P::sample_bracket(sample, p - margin + 1, p + margin + 1, &hi, &lo);
    found = try_bracket(lo, hi);
  }
  if (!found) {
    P::template keys<Mag>(x, n, cand);
    kth = trim_fast_detail::select_rth<P>(cand, n, k, 0u, kMaxKey, &gt, &eq);
  }
  if (hint) {
    float t;
    std::memcpy(&t, &kth, 4);
    hint->rel = hint->rms > 0 && t > 0 && t < 3e38f ? t / hint->rms : 0;
  }
  const int64_t ties_kept = k - gt;  // >= 1: kth is the k-th largest
  return {kth, eq > ties_kept ? P::template nth_equal<Mag>(x, n, kth, ties_kept) : n};
}

// Keeps the k entries of v with the largest importance (x = e, or x = v with Mag: |v|), zeroes
// the others, returns the f64 sum of the kept importance squared. cand: n + 16 uint32 of scratch.
template <class P, bool Mag>
double trim_fast(const float* x, float* v, int64_t n, int64_t k, uint32_t* cand, TrimHint* hint = nullptr) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  if (k >= n) {
    trim_detail::sum_squares8(x, n, acc);
    return trim_detail::combine8(acc);
  }
  const FastSelection sel = select_fast<P, Mag>(x, n, k, cand, hint);
  P::template apply<Mag>(x, v, n, sel.kth, sel.last_tie, acc);
  return trim_detail::combine8(acc);
}

}  // namespace
}  // namespace geoedit
