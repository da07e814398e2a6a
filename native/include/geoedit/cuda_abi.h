/* The plain C ABI between the geoedit core (inside the Node addon) and the CUDA plugin
 * geoedit_cuda.so, which the core dlopen()s only when a CUDA backend is asked for or probed
 * (as ggml's GGML_BACKEND_DL does). Only plain C types cross it; the plugin links the CUDA
 * runtime statically and nothing of the core, so the addon itself never depends on CUDA.
 *
 * Versioning: the core refuses a plugin whose geoedit_cuda_abi_version() differs from
 * GEOEDIT_CUDA_ABI_VERSION. Any change to a struct below or to a function signature bumps it.
 */
#ifndef GEOEDIT_CUDA_ABI_H
#define GEOEDIT_CUDA_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "geoedit/geoedit.h" /* geoedit_row_stats (its C part; the C++ API only under __cplusplus) */

#ifdef __cplusplus
extern "C" {
#endif

#define GEOEDIT_CUDA_ABI_VERSION 3

/* Status codes returned by the plugin's functions. */
enum {
  GEOEDIT_CUDA_OK = 0,
  GEOEDIT_CUDA_NO_DRIVER = 1,    /* no usable NVIDIA driver (libcuda missing or too old) */
  GEOEDIT_CUDA_NO_DEVICE = 2,    /* driver present, no CUDA device visible */
  GEOEDIT_CUDA_TOO_OLD = 3,      /* device compute capability below the plugin's minimum (8.0) */
  GEOEDIT_CUDA_ERROR = 4,        /* a CUDA call failed (message in err) */
  GEOEDIT_CUDA_OUT_OF_MEMORY = 5,/* device or pinned allocation failed */
  GEOEDIT_CUDA_ROW_ERROR = 6,    /* a row failed validation (non-finite / bad importance): see bad_row */
  GEOEDIT_CUDA_INVALID = 7,      /* invalid arguments */
  GEOEDIT_CUDA_NO_LINALG = 8     /* cuBLAS / cuSOLVER could not be loaded (message in err) */
};

/* dtype codes: the values of geoedit::DType. */
enum { GEOEDIT_CUDA_F32 = 0, GEOEDIT_CUDA_F16 = 1, GEOEDIT_CUDA_BF16 = 2 };

typedef struct geoedit_cuda_device {
  char name[256];
  uint64_t total_memory;       /* bytes */
  uint64_t free_memory;        /* bytes, at probe time */
  int cc_major, cc_minor;      /* compute capability */
  int driver_version;          /* e.g. 13000 for 13.0 (cudaDriverGetVersion) */
  int runtime_version;         /* the statically linked runtime (cudaRuntimeGetVersion) */
  int device_count;
  int multiprocessors;
  int device_index;            /* the device used (0, or CUDA_VISIBLE_DEVICES' first) */
} geoedit_cuda_device;

/* A block of rows [rows, cols] in host memory, row-major, each input in its dtype. Mirrors
 * geoedit::EditJob. Every per-row output pointer may be NULL. out == NULL: analyse only. */
typedef struct geoedit_cuda_job {
  int64_t rows, cols;
  const void* base; int base_dtype;
  const void* old_; int old_dtype;
  const void* new_; int new_dtype;
  const void* imp_old; int imp_old_dtype; /* NULL: magnitude importance (both or neither) */
  const void* imp_new; int imp_new_dtype;
  const float* c_new;                     /* strategy custom: one per row */
  const float* c_old;
  void* out; int out_dtype;
  geoedit_row_stats stats;                /* per-row results (geoedit/geoedit.h), each optional */
} geoedit_cuda_job;

/* Mirrors geoedit::Params (validated by the core before the call). */
typedef struct geoedit_cuda_params {
  int strategy;                /* geoedit::Strategy */
  double scale, kappa, band_degrees, keep_orthogonal, fuse_aligned, forget_conflicting;
  double lambda, density, temperature;
  int allow_non_finite;
  int allow_non_finite_output; /* 0: a row whose output overflows its dtype fails (bad_kind 3) */
} geoedit_cuda_params;

typedef struct geoedit_cuda_options {
  uint64_t memory_limit;       /* device bytes the call may allocate; 0 = default (see docs/cuda.md) */
  int streams;                 /* >= 2; 0 = default (2) */
} geoedit_cuda_options;

typedef struct geoedit_cuda_run_info {
  int64_t bad_row;             /* GEOEDIT_CUDA_ROW_ERROR: the lowest failing row (block-relative) */
  int bad_kind;                /* 1 non-finite input, 2 bad importance, 3 output overflows its dtype */
  int64_t chunk_rows;          /* rows per device chunk used */
  int chunks;
  double seconds;              /* wall time of the call */
} geoedit_cuda_run_info;

/* LoRA geometry (SPEC §4) without materialising B·A: per row i,
 * dot_i = s_o s_n B_o[i] (A_o A_nᵀ) B_n[i]ᵀ, na_i = s_o² B_o[i] (A_o A_oᵀ) B_o[i]ᵀ, nb_i likewise.
 * A: r×n row-major, B: m×r row-major, all f32 on the host. Outputs f64, length m. */
typedef struct geoedit_cuda_lora {
  int64_t m, n, r_old, r_new;
  const float* a_old; const float* b_old;
  const float* a_new; const float* b_new;
  double s_old, s_new;
  double* dot; double* na; double* nb;
} geoedit_cuda_lora;

/* A device-resident benchmark of the edit kernels (no host transfers), for bench/gpu/. */
typedef struct geoedit_cuda_bench_spec {
  int64_t rows, cols;
  int dtype;                   /* inputs and output */
  int reps;
  geoedit_cuda_params params;
  int with_importance;         /* 1: importance tensors of the same dtype */
} geoedit_cuda_bench_spec;

typedef struct geoedit_cuda_bench_result {
  double kernel_ms;            /* median over reps */
  double kernel_gbps;          /* (3 inputs + output [+ 2 importance]) bytes / time */
  double copy_gbps;            /* cudaMemcpy device-to-device, bytes read + written / time (median) */
  double checksum;             /* sum over the output (keeps the work honest) */
} geoedit_cuda_bench_result;

/* The functions the plugin exports (looked up by name with dlsym). */
typedef int (*geoedit_cuda_abi_version_fn)(void);
typedef int (*geoedit_cuda_probe_fn)(geoedit_cuda_device* dev, char* why, size_t why_len);
typedef int (*geoedit_cuda_run_edit_fn)(const geoedit_cuda_job* job, const geoedit_cuda_params* params,
                                        const geoedit_cuda_options* opts, geoedit_cuda_run_info* info,
                                        char* err, size_t err_len);
typedef int (*geoedit_cuda_lora_geometry_fn)(const geoedit_cuda_lora* job, char* err, size_t err_len);
typedef int (*geoedit_cuda_bench_fn)(const geoedit_cuda_bench_spec* spec, geoedit_cuda_bench_result* res,
                                     char* err, size_t err_len);

/* SPEC §3 step 0 (preservation) with cuBLAS / cuSOLVER, which the plugin loads at run time (dlopen).
 * linalg_probe: GEOEDIT_CUDA_OK when both libraries are usable (why: the libraries), else
 *   GEOEDIT_CUDA_NO_LINALG with the reason.
 * preserve_rows: Y[rows, d] = X[rows, d] · P[d, d], f32 row-major host buffers (cublasSgemm, no TF32);
 *   op_id identifies P (the plugin keeps device copies of the last few operators by id).
 * spd_solve: Cholesky of the SPD A (d×d f64 column-major, lower triangle read; host, not modified);
 *   *info = 0 when positive definite (else potrf's info, the failing column + 1); when nrhs > 0 and
 *   info = 0, B (d×nrhs f64 column-major, host) is replaced by A^-1·B. */
typedef int (*geoedit_cuda_linalg_probe_fn)(char* why, size_t why_len);
typedef int (*geoedit_cuda_preserve_rows_fn)(uint64_t op_id, const float* P, int64_t d, const float* X, int64_t rows,
                                             float* Y, char* err, size_t err_len);
typedef int (*geoedit_cuda_spd_solve_fn)(const double* A, int64_t d, double* B, int64_t nrhs, int* info, char* err,
                                         size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* GEOEDIT_CUDA_ABI_H */
