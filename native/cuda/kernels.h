// The CUDA kernels of the plugin (SPEC §3, §4) and their launchers. Device pointers only.
#pragma once

#include <cuda_runtime.h>
#include <cstdint>

#include "geoedit/geoedit.h"

namespace geoedit {
namespace cuda {

// Per-row status written by the edit kernels.
enum : int { kRowOk = 0, kRowNonFinite = 1, kRowBadImportance = 2, kRowNonFiniteOutput = 3 };

// One chunk of rows on the device. dtype fields hold geoedit::DType values.
struct DevJob {
  int64_t rows = 0, cols = 0;
  const void* base = nullptr;
  const void* old_ = nullptr;
  const void* new_ = nullptr;
  const void* imp_old = nullptr;   // nullptr: magnitude importance
  const void* imp_new = nullptr;
  int base_dt = 0, old_dt = 0, new_dt = 0, imp_old_dt = 0, imp_new_dt = 0, out_dt = 0;
  const float* c_new = nullptr;    // strategy custom
  const float* c_old = nullptr;
  void* out = nullptr;             // nullptr: analyse only
  double* cos = nullptr;           // every per-row array is required on the device
  uint8_t* region = nullptr;
  float* coef_new = nullptr;
  float* coef_old = nullptr;
  double* delta_sq = nullptr;
  double* na = nullptr;
  double* nb = nullptr;
  int* status = nullptr;
  float* ws = nullptr;             // general path: ws_blocks * 2 * cols floats
  int ws_blocks = 0;
};

// Whether a job takes the general path (per-row top-k and/or importance tensors).
inline bool needs_general(const Params& p, bool has_imp) { return p.density < 1.0 || has_imp; }

// Blocks of the general path for a device with `sms` multiprocessors (the workspace is per block).
int general_blocks(int sms, int64_t rows);

// Largest row (columns) the fast path keeps in shared memory; longer rows are read twice.
int64_t fast_cache_cols(int smem_optin);
// Same for the 16-bit raw-cache kernel (6 bytes per column, at least two blocks per multiprocessor).
int64_t fast16_cache_cols(int smem_optin);

// Launches SPEC §3 on every row of the job on `stream`. t = region threshold, k = kept entries.
cudaError_t launch_edit(const DevJob& job, const Params& p, double t, int64_t k, cudaStream_t stream, int sms,
                        int smem_optin);

// SPEC §5: marks rows (status kRowOk -> kRowNonFiniteOutput) whose encoded output holds an
// infinity or NaN (the output overflowed its dtype). Run after launch_edit on the same stream.
cudaError_t launch_check_out(const void* out, int out_dt, int64_t rows, int64_t cols, int* status, cudaStream_t stream);

// LoRA (SPEC §4): G = X·Yᵀ in f64 (X: rx×n, Y: ry×n, f32 row-major), then per row i
// out[i] = s · x_i G y_iᵀ with x_i = Bx[i] (rx), y_i = By[i] (ry).
cudaError_t launch_gram(const float* X, int64_t rx, const float* Y, int64_t ry, int64_t n, double* G, cudaStream_t s);
cudaError_t launch_quad(const float* Bx, int64_t rx, const double* G, const float* By, int64_t ry, int64_t m,
                        double scale, double* out, cudaStream_t s);

// Fills n values of dtype with a deterministic pseudo-random pattern (bench inputs).
cudaError_t launch_fill(void* p, int dtype, int64_t n, uint32_t seed, float center, float spread, cudaStream_t s);
// Sums n values of dtype into *sum (bench checksum; order not fixed).
cudaError_t launch_sum(const void* p, int dtype, int64_t n, double* sum, cudaStream_t s);

}  // namespace cuda
}  // namespace geoedit
