// geoedit core: the CUDA backend as the core sees it. The kernels live in a plugin,
// geoedit_cuda.so (native/cuda/), that the core dlopen()s only when CUDA is asked for or probed;
// this header is plain C++ and needs no CUDA headers. See docs/cuda.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "geoedit/geoedit.h"

namespace geoedit {

struct CudaDevice {
  std::string name;
  uint64_t total_memory = 0;   // bytes
  int cc_major = 0, cc_minor = 0;
  int driver_version = 0;      // CUDA driver API version, e.g. 13000
  int runtime_version = 0;     // the plugin's (static) runtime, e.g. 13000
  int device_count = 0;
  int multiprocessors = 0;
  int device_index = 0;
};

struct CudaStatus {
  bool available = false;
  // Why CUDA is not usable (empty when available). One of, in the order they are checked:
  //   "plugin missing: ..."    no geoedit_cuda.so next to the addon (a CPU-only build)
  //   "no driver: ..."         libcuda.so.1 cannot be loaded, or the driver is older than the runtime
  //   "plugin failed to load: ..." dlopen/dlsym failure or ABI version mismatch
  //   "no device: ..."         the driver sees no CUDA device
  //   "too old: ..."           compute capability below 8.0
  //   "error: ..."             any other CUDA error while probing
  std::string reason;
  std::string kind;            // "ok", "plugin-missing", "no-driver", "plugin-load", "no-device", "too-old", "error"
  std::string plugin_path;     // the plugin file used or that would be used
  std::vector<std::string> tried;  // every plugin path looked at
  CudaDevice device;
};

// Probes once (dlopen of the plugin and a device query) and caches the answer; thread-safe.
// refresh = true probes again (the plugin, once loaded, stays loaded).
CudaStatus cuda_status(bool refresh = false);

// Where the core looks for the plugin, in order: $GEOEDIT_CUDA_PLUGIN (a file) if set, else
// <dir of the addon>/plugins/, <dir>/cuda/, <dir>/ (file name geoedit_cuda.so).
std::vector<std::string> cuda_plugin_candidates();

struct CudaRunOptions {
  uint64_t memory_limit = 0;   // device bytes one call may use; 0: $GEOEDIT_CUDA_MEMORY or the default
  int streams = 0;             // 0: 2
};

// SPEC §3 on the GPU, same contract as run_edit (errors name tensor and row exactly as the CPU
// does). Throws Error(CudaUnavailable) with the probe's reason when CUDA is not usable.
// This is also the block-level entry point for the checkpoint pipeline: a job may be any block
// of a tensor's rows in host memory (set row_offset for messages); inputs are streamed to the
// device in chunks with pinned buffers and >= 2 streams, device memory bounded by memory_limit.
void run_edit_cuda(const EditJob& job, const Params& params, const CudaRunOptions& opts = CudaRunOptions());

// SPEC §3 step 0 on the GPU (cuBLAS / cuSOLVER, loaded by the plugin at run time).
struct CudaPreserveStatus {
  bool available = false;
  std::string reason;   // why not (CUDA unusable, or the libraries could not be loaded); empty when available
  std::string libs;     // the libraries in use
};
// Probes once (after cuda_status) and caches the answer; never throws.
CudaPreserveStatus cuda_preserve_status(bool refresh = false);
// Y[rows, d] = X[rows, d]·P on the GPU (f32, host buffers); op_id identifies P (Preserve::id). Throws Error(Cuda).
void cuda_preserve_rows(uint64_t op_id, const float* P, int64_t d, const float* X, int64_t rows, float* Y);
// Cholesky of the SPD A (d×d f64, column-major, host; not modified) on the GPU; with nrhs > 0 and A
// positive definite, B (d×nrhs) becomes A^-1·B. Returns potrf's info (0: positive definite). Throws Error(Cuda).
int cuda_spd_solve(const double* A, int64_t d, double* B, int64_t nrhs);

// SPEC §4 geometry of LoRA deltas tau = s·B·A without materialising B·A (A: r×n, B: m×r, f32).
struct LoraGeometryJob {
  int64_t m = 0, n = 0, r_old = 0, r_new = 0;
  const float* a_old = nullptr;
  const float* b_old = nullptr;
  const float* a_new = nullptr;
  const float* b_new = nullptr;
  double s_old = 1, s_new = 1;
  double* dot = nullptr;  // length m each
  double* na = nullptr;
  double* nb = nullptr;
};
// CPU reference (f64 Gram matrices, then per-row quadratic forms).
void lora_geometry_cpu(const LoraGeometryJob& job);
// The same on the GPU (tiled f64 Gram kernel); throws like run_edit_cuda.
void lora_geometry_cuda(const LoraGeometryJob& job);

// Device-resident benchmark of the edit kernel and of a device-to-device copy (bench/gpu/).
struct CudaBenchResult {
  double kernel_ms = 0, kernel_gbps = 0, copy_gbps = 0, checksum = 0;
};
CudaBenchResult cuda_bench(int64_t rows, int64_t cols, DType dtype, int reps, const Params& params, bool with_importance);

}  // namespace geoedit
