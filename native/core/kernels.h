// The per-ISA row kernels. The scalar table is the reference and is always compiled in;
// native/cpu/ provides AVX2 and AVX-512 tables built with their own flags and chosen at run time.
#pragma once
#include <cstdint>
#include "geoedit/geoedit.h"

namespace geoedit {

struct Kernels {
  const char* name;
  // src (n values of dtype) -> dst f32. Exact.
  void (*decode)(DType dtype, const void* src, float* dst, int64_t n);
  // out = (base + cn*b) + co*a in f32 (no FMA contraction), then rounded to out_dtype (RNE).
  void (*output)(const float* base, const float* a, const float* b, float cn, float co,
                 int64_t n, DType out_dtype, void* dst);
  // f32 -> out_dtype (RNE), used for coefficient-free rows and conversions.
  void (*encode)(const float* src, DType dtype, void* dst, int64_t n);
  // Top-k by importance e (SPEC §3.3): zeroes the non-kept entries of v, returns sum of kept e^2.
  // cand: n uint32 scratch; hist: 2048 uint32 scratch.
  double (*trim)(const float* e, float* v, int64_t n, int64_t k, uint32_t* cand, uint32_t* hist);
  // As output, with non-temporal (streaming) stores where dst is aligned: for outputs far larger
  // than the caches, it skips the read-for-ownership of every output line. Same bytes as output.
  // The caller issues a store fence before publishing the results.
  void (*output_nt)(const float* base, const float* a, const float* b, float cn, float co,
                    int64_t n, DType out_dtype, void* dst);
  // The fused first pass: decodes base, old and new (each in its stored dtype) in one loop, so
  // the three input streams are read together; writes a = old - base, b = new - base, and the
  // decoded base to base_out unless it is null; dot/na/nb in f64. Same values as decode + stats.
  void (*stats_raw)(DType bd, const void* base, DType od, const void* old_, DType nd, const void* new_,
                    int64_t n, float* base_out, float* a, float* b, double* dot, double* na, double* nb);
  // trim with the magnitude as importance (e = |v|, the default): the same kept entries and sum as
  // filling e_scratch (n floats) with |v| and calling trim, which the scalar reference does.
  double (*trim_mag)(float* v, int64_t n, int64_t k, uint32_t* cand, uint32_t* hist, float* e_scratch);
};

extern const Kernels kScalarKernels;
#if defined(GEOEDIT_X86)
extern const Kernels kAvx2Kernels;
extern const Kernels kAvx512Kernels;
#endif

const Kernels& kernels_for(SimdLevel level);

}  // namespace geoedit
