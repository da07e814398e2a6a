// SPEC §4: LoRA task vectors tau = s * L * R without materialising L*R.
// Plain C++ (no Node headers). L is [m, r] (one row per output neuron), R is [r, n].
// For a PEFT Linear, L = lora_B [out, r] and R = lora_A [r, in]; for an Embedding,
// tau = s * (B*A)^T, so L = lora_embedding_A^T and R = lora_embedding_B^T (the caller packs them).
#pragma once
#include <cstdint>
#include <string>
#include "geoedit/geoedit.h"

namespace geoedit {

// One side's factors for one module, contiguous row-major f32.
// r == 0 (or L/R null) means the module is absent on this side: a zero task vector.
struct LoraSide {
  const float* L = nullptr;  // [rows, r]
  const float* R = nullptr;  // [r, cols]
  int64_t r = 0;
  double scale = 0;          // lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA
  bool present() const { return r > 0 && L && R; }
};

struct LoraJob {
  int64_t rows = 0, cols = 0;  // the neuron view of tau: [m, n]
  LoraSide old_, new_;
  const float* c_new = nullptr;  // strategy Custom: one per row
  const float* c_old = nullptr;
  // Per-row outputs, each optional.
  RowStats stats{};
  double* dot = nullptr;  // tau_old . tau_new per row
  std::string tensor_name;  // for error messages
};

// Geometry (§3.1) from the Gram matrices R_o R_n^T, R_o R_o^T, R_n R_n^T (f64), then region,
// importance weight and coefficients (§3.2, §3.4, §3.5) per row. Density must be 1 and importance
// must be magnitude (s_a = sqrt(na / n)): anything else needs materialised rows.
// Deterministic: the same bytes for any thread count.
void run_lora_geometry(const LoraJob& job, const Params& params, const RunOptions& ro = RunOptions());

// Materialise rows [r0, r1) of tau = s * L * R into dst ([r1 - r0, cols] f32, row-major).
// Each element is the f64 sum rounded once to f32. A side that is not present gives zeros.
void lora_materialize(const LoraSide& side, int64_t cols, int64_t r0, int64_t r1, float* dst,
                      const RunOptions& ro = RunOptions());

// Merged full weights for a block of the base tensor's stored rows (SPEC §3.6 with
// per-neuron coefficients): out = (base + c_new*tau_new) + c_old*tau_old in f32, no FMA,
// rounded to out_dtype. Neuron i of tau (rows x cols) is stored row i of the base when
// transposed is false, stored column i when it is true (fan_in_fan_out: base is [cols, rows]).
// The block is stored rows [s0, s1) of the base; base_block/out point at its first row.
struct LoraMergeJob {
  int64_t rows = 0, cols = 0;  // tau's neuron view [m, n]
  LoraSide old_, new_;
  const float* c_new = nullptr;  // per neuron, length rows (the applied coefficients)
  const float* c_old = nullptr;
  bool transposed = false;
  int64_t s0 = 0, s1 = 0;
  View base;                     // stored rows [s0, s1)
  DType out_dtype = DType::F32;
  void* out = nullptr;           // stored rows [s0, s1) in out_dtype
  std::string tensor_name;
  // SPEC §5: an output that overflows out_dtype is Error(NonFiniteOutput) naming the stored row
  // and column, unless this is set (the Params' allow_non_finite or allow_non_finite_output).
  bool allow_non_finite_output = false;
};
void run_lora_merge(const LoraMergeJob& job, const RunOptions& ro = RunOptions());

}  // namespace geoedit
