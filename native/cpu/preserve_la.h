// The linear algebra of SPEC §3 step 0 (core/preserve.cc), one table per ISA. Each table is Eigen
// compiled with that ISA's flags in its own translation unit (preserve_la_base.cc: x86-64 baseline,
// preserve_la_avx2.cc, preserve_la_avx512.cc), each copy of Eigen's templates renamed into its own
// namespace (preserve_la_impl.h), so no AVX-512 instantiation can stand in for a baseline one at
// link time. Row-major f32 for rows and operators; the f64 work matrices are d×d column-major.
#pragma once
#include <cstdint>

#include "geoedit/geoedit.h"

namespace geoedit {

struct PreserveLa {
  const char* name;
  // C (d×d f64, full) = K^T K / N for K [N, d] f32 row-major (f64 accumulation, fixed row chunks).
  void (*gram)(const float* K, int64_t N, int64_t d, double* C);
  // In-place Cholesky of S (d×d f64 column-major; the lower triangle is read and replaced by L).
  // Returns false when S is not numerically positive definite.
  bool (*cholesky)(double* S, int64_t d);
  // Solves L L^T X = B in place for columns [c0, c1) of B (d×d column-major), L from cholesky.
  void (*solve_cols)(const double* L, int64_t d, double* B, int64_t c0, int64_t c1);
  // Y[rows, nout] = X[rows, kd]·P[kd, nout], f32 row-major with leading dimensions (Eigen GEMM).
  void (*gemm)(const float* X, int64_t rows, int64_t kd, int64_t ldx, const float* P, int64_t ldp, int64_t nout,
               float* Y, int64_t ldy);
  // Y[rows, d] = X − (X·U^T)·U, f32 (U: k×d row-major).
  void (*basis)(const float* X, int64_t rows, int64_t d, const float* U, int64_t k, float* Y);
  // G (k×k f64) = U·U^T, for the orthonormality check.
  void (*gram_rows)(const float* U, int64_t k, int64_t d, double* G);
  // The machine's peak for the bench: f32 FMA/s of this ISA's widest vectors on one thread
  // (an unrolled FMA loop over independent accumulators), in GFLOP/s, measured over `seconds`.
  double (*fma_peak_gflops)(double seconds);
};

extern const PreserveLa kPreserveLaBase;
#if defined(GEOEDIT_X86)
extern const PreserveLa kPreserveLaAvx2;
extern const PreserveLa kPreserveLaAvx512;
#endif

// The table for a SIMD level (the baseline copy for Scalar: SSE2, x86-64's baseline).
const PreserveLa& preserve_la_for(SimdLevel level);

}  // namespace geoedit
