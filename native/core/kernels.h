// The per-ISA row kernels. The scalar table is the reference and is always compiled in;
// native/cpu/ provides AVX2 and AVX-512 tables built with their own flags and chosen at run time.
#pragma once
#include <cstdint>
#include "geoedit/geoedit.h"

namespace geoedit {

// Where the previous row of the same side put its top-k threshold, relative to that row's RMS:
// the next select starts from a narrow bracket around rel * rms instead of a sample (rows of one
// tensor are alike). Only a start: a miss costs one more pass, never a different result.
struct TrimHint {
  float rel = 0;  // kept by the kernel: the last threshold / its row's RMS (0: none yet)
  float rms = 0;  // set by the caller: this row's RMS (sqrt(sum of squares / n))
};

// Top-k of one side of a row, as the fused path keeps it: column j is kept iff key(j) > kth, or
// key(j) == kth and j <= last_tie (key: |v| as f32 bits, NaN as 0; trim_impl.h key_of).
struct RowSelection {
  uint32_t kth;
  int64_t last_tie;
};

// The fused row path: base, old and new rows of one stored dtype are read where they lie (raw), and
// no decoded row is written to scratch: one pass for the geometry, one (per trimmed side) for the
// top-k, one for the output, each decoding what it needs again (the raw rows stay in L1/L2). The same
// values as stats_raw + trim_mag + output (the sums in another order). Only where an ISA provides it
// (Kernels::fused may be null: the row then takes those kernels, which the scalar reference does).
// The next row's geometry sums, computed by this row's fused output call (process_rows' row pipeline): its
// three raw rows stream in from memory while this row's output is computed on the cached ones. The same
// blocks in the same order as FusedRowKernels::stats (the same sums, bit for bit). How (row_pipeline() in
// edit.cc picks it per CPU): sums true, the output pass sums a block of the next row after each of its own
// blocks (rows without a top-k); sums false, it only prefetches the next row's lines into L2 and sums them at
// its end (what rows with a top-k always do). The second is faster where the combined loop runs out of
// registers or L1 (Zen 4: 32 KiB L1, double-pumped 512-bit ops); the first measured faster than no pipeline
// on the Intel VM it was tuned on (the second is not measured there).
struct NextRowStats {
  const void* base;
  const void* old_;
  const void* new_;
  bool sums = true;
  double dot = 0, na = 0, nb = 0;  // set by the kernel
};

struct FusedRowKernels {
  // dot/na/nb of a = old - base, b = new - base (f64), as stats_raw computes them.
  void (*stats)(DType d, const void* base, const void* old_, const void* new_, int64_t n, double* dot, double* na,
                double* nb);
  // The top-k (1 <= k < n) by magnitude of v = x - base (x: old or new): what trim_mag keeps. cand: n + 16
  // uint32 of scratch; hint as trim_mag's (rms: this row's RMS of v). prefetch_next: base and x are rows of
  // [rows, n] tensors whose next rows (n columns on) are read next: the passes prefetch them into L2.
  RowSelection (*select)(DType d, const void* base, const void* x, int64_t n, int64_t k, uint32_t* cand, TrimHint* hint,
                         bool prefetch_next);
  // out = (base + cn*b~) + co*a~ in f32 (no FMA contraction), rounded to out_dtype (RNE), where b~ is b kept by
  // sel_b (all of b when null; likewise a~); the f64 sum of the kept squares into *kept_a / *kept_b (where the
  // selection is given). At most one selection; sel_a only with co != 0. Streaming stores where nt and dst is
  // 4-byte aligned (the caller fences). Returns a value >= non_finite_bits(out_dtype) iff some output value is
  // not finite in out_dtype; the bytes written are then unspecified (the caller writes the row again).
  // Rows must be finite (base, old and new: finite sums), as must be the select's. next: null, or the next row
  // (n columns of dtype d, any values) whose stats are computed in the same pass (NextRowStats), whatever the
  // return value.
  uint32_t (*output)(DType d, const void* base, const void* old_, const void* new_, int64_t n, float cn, float co,
                     const RowSelection* sel_a, const RowSelection* sel_b, double* kept_a, double* kept_b, DType out_dtype,
                     void* dst, bool nt, NextRowStats* next);
};

struct Kernels {
  const char* name;
  // src (n values of dtype) -> dst f32. Exact.
  void (*decode)(DType dtype, const void* src, float* dst, int64_t n);
  // out = (base + cn*b) + co*a in f32 (no FMA contraction), then rounded to out_dtype (RNE).
  // Returns the largest |out| over the row as f32 bits (abs_bits: NaN above +inf), for the
  // overflow check (SPEC §5: compare with non_finite_bits(out_dtype)).
  uint32_t (*output)(const float* base, const float* a, const float* b, float cn, float co,
                     int64_t n, DType out_dtype, void* dst);
  // f32 -> out_dtype (RNE), used for coefficient-free rows and conversions.
  void (*encode)(const float* src, DType dtype, void* dst, int64_t n);
  // Top-k by importance e (SPEC §3.3): zeroes the non-kept entries of v, returns sum of kept e^2.
  // cand: n uint32 scratch; hist: 2048 uint32 scratch.
  double (*trim)(const float* e, float* v, int64_t n, int64_t k, uint32_t* cand, uint32_t* hist);
  // As output, with non-temporal (streaming) stores where dst is aligned: for outputs far larger
  // than the caches, it skips the read-for-ownership of every output line. Same bytes as output.
  // The caller issues a store fence before publishing the results.
  uint32_t (*output_nt)(const float* base, const float* a, const float* b, float cn, float co,
                        int64_t n, DType out_dtype, void* dst);
  // The fused first pass: decodes base, old and new (each in its stored dtype) in one loop, so
  // the three input streams are read together; writes a = old - base, b = new - base, and the
  // decoded base to base_out unless it is null; dot/na/nb in f64. Same values as decode + stats.
  void (*stats_raw)(DType bd, const void* base, DType od, const void* old_, DType nd, const void* new_,
                    int64_t n, float* base_out, float* a, float* b, double* dot, double* na, double* nb);
  // trim with the magnitude as importance (e = |v|, the default): the same kept entries and sum as
  // filling e_scratch (n floats) with |v| and calling trim, which the scalar reference does.
  // hint: may be null; the scalar reference ignores it.
  double (*trim_mag)(float* v, int64_t n, int64_t k, uint32_t* cand, uint32_t* hist, float* e_scratch, TrimHint* hint);
  // null: no fused row path on this ISA (see FusedRowKernels).
  const FusedRowKernels* fused;
};

// |f| as f32 bits: monotonic in |f| for finite values, +inf above them, NaN above +inf.
inline uint32_t abs_bits(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  return u & 0x7FFFFFFFu;
}
// The smallest abs_bits an f32 value may have and round (RNE) to a non-finite value of `d`:
// +inf for f32, 65520 for f16 (halfway above 65504), 0x7F7F8000 for bf16 (halfway above its max).
inline uint32_t non_finite_bits(DType d) {
  return d == DType::F32 ? 0x7F800000u : d == DType::F16 ? 0x477FF000u : 0x7F7F8000u;
}
// max abs_bits over n values (the rows that are re-encoded, not computed).
inline uint32_t max_abs_bits(const float* v, int64_t n) {
  uint32_t m = 0;
  for (int64_t j = 0; j < n; ++j) m = abs_bits(v[j]) > m ? abs_bits(v[j]) : m;
  return m;
}

extern const Kernels kScalarKernels;
#if defined(GEOEDIT_X86)
extern const Kernels kAvx2Kernels;
extern const Kernels kAvx512Kernels;
#endif

const Kernels& kernels_for(SimdLevel level);

}  // namespace geoedit
