// geoedit core: the public C++ API of the numerical core (SPEC.md §2, §3, §5).
// No Node headers here or anywhere under native/ except native/binding/.
#pragma once

#include <stdint.h>

/* The per-row results of an edit, each array optional (NULL to skip), one entry per row. Written in
 * C (no initialisers: value-initialise it, `RowStats s{}`) because it also crosses the CUDA
 * plugin's C ABI (geoedit/cuda_abi.h); the one declaration of these fields for EditJob, LoraJob,
 * StreamTask, geoedit_cuda_job and the binding. */
typedef struct geoedit_row_stats {
  double* cos;
  uint8_t* region;
  float* coef_new;   /* the coefficients actually applied */
  float* coef_old;
  double* delta_sq;  /* sum_j (out_f32 - base_f32)^2 before rounding, per row */
  double* nb;        /* |tau_new|^2 per row (untrimmed) */
  double* na;        /* |tau_old|^2 per row (untrimmed) */
} geoedit_row_stats;

#ifdef __cplusplus

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace geoedit {

using RowStats = geoedit_row_stats;

// The same arrays from row r on (a block of rows starting at r); null pointers stay null.
inline RowStats rows_from(const RowStats& s, int64_t r) {
  RowStats o{};
  if (s.cos) o.cos = s.cos + r;
  if (s.region) o.region = s.region + r;
  if (s.coef_new) o.coef_new = s.coef_new + r;
  if (s.coef_old) o.coef_old = s.coef_old + r;
  if (s.delta_sq) o.delta_sq = s.delta_sq + r;
  if (s.nb) o.nb = s.nb + r;
  if (s.na) o.na = s.na + r;
  return o;
}

// Row i's geometry and coefficients into whichever arrays are present (delta_sq is the caller's).
inline void put_row(const RowStats& s, int64_t i, double cos, uint8_t region, float coef_new, float coef_old, double na,
                    double nb) {
  if (s.cos) s.cos[i] = cos;
  if (s.region) s.region[i] = region;
  if (s.coef_new) s.coef_new[i] = coef_new;
  if (s.coef_old) s.coef_old[i] = coef_old;
  if (s.na) s.na[i] = na;
  if (s.nb) s.nb[i] = nb;
}

enum class DType : uint8_t { F32 = 0, F16 = 1, BF16 = 2 };

inline size_t dtype_size(DType d) { return d == DType::F32 ? 4 : 2; }
const char* dtype_name(DType d);
bool parse_dtype(const std::string& s, DType* out);

enum class Strategy : uint8_t { GeoEdit = 0, ForgetThenLearn = 1, TaskArithmetic = 2, Custom = 3 };
bool parse_strategy(const std::string& s, Strategy* out);

enum class Region : uint8_t { Orthogonal = 0, Synergy = 1, Conflict = 2 };

// Stable error codes; the binding maps them to GeoEditError.code strings.
enum class ErrorCode : uint8_t {
  InvalidArgument,  // ERR_INVALID_ARGUMENT
  ShapeMismatch,    // ERR_SHAPE_MISMATCH
  NonFinite,        // ERR_NON_FINITE
  BadImportance,    // ERR_BAD_IMPORTANCE
  BadSafetensors,   // ERR_BAD_SAFETENSORS
  Io,               // ERR_IO
  CudaUnavailable,  // ERR_CUDA_UNAVAILABLE
  Cuda,             // ERR_CUDA
  Internal,         // ERR_INTERNAL
  Aborted,          // ERR_ABORTED (a checkpoint job was cancelled)
  BadStatistics,    // ERR_BAD_STATISTICS (preservation statistics: not symmetric, not PSD, basis not orthonormal)
  NonFiniteOutput,  // ERR_NON_FINITE_OUTPUT (an output overflows its dtype: SPEC §5)
};
const char* error_code_name(ErrorCode c);

// What an error is about, where the core knows it (the binding sets these on the JS error's
// `details`: file, tensor, option, row, column). Empty strings and negative numbers: unknown.
struct ErrorDetails {
  std::string file;
  std::string tensor;
  std::string option;
  int64_t row = -1;
  int64_t column = -1;
};

inline ErrorDetails file_details(const std::string& file) { ErrorDetails d; d.file = file; return d; }
inline ErrorDetails tensor_details(const std::string& tensor, int64_t row = -1, int64_t column = -1) {
  ErrorDetails d;
  d.tensor = tensor;
  d.row = row;
  d.column = column;
  return d;
}

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& msg, ErrorDetails details = ErrorDetails())
      : std::runtime_error(msg), code_(code), details_(std::move(details)) {}
  ErrorCode code() const { return code_; }
  const ErrorDetails& details() const { return details_; }

 private:
  ErrorCode code_;
  ErrorDetails details_;
};

// The SPEC §3 defaults. This is the only place they are written down in C++;
// lib/options.ts mirrors them for JS and is checked against defaults() by a test.
struct Params {
  Strategy strategy = Strategy::GeoEdit;
  double scale = 1.0;             // alpha
  double kappa = 2.0;             // adaptive threshold t = kappa / sqrt(n) (calibrated: docs/quality.md)
  double band_degrees = -1.0;     // when >= 0 replaces kappa: t = sin(band_degrees)
  double keep_orthogonal = 0.75;  // gamma (calibrated: docs/quality.md)
  double fuse_aligned = 0.0;      // mu
  double forget_conflicting = 0.0;// phi
  double lambda = 1.0;            // F-Learning forgetting strength
  double density = 1.0;           // rho in (0, 1]
  double temperature = 1.0;       // T > 0
  bool allow_non_finite = false;         // non-finite inputs (and the non-finite outputs they lead to)
  bool allow_non_finite_output = false;  // outputs that overflow their dtype (a large scale, a narrow out dtype)
};

// The paper preset (SPEC §3): keepOrthogonal 0, fuseAligned 1, forgetConflicting 1, kappa 1.
void apply_paper_preset(Params* p);
// Throws Error(InvalidArgument) naming the option when a value is out of range.
void validate_params(const Params& p);

// One tensor viewed as [rows, cols], row-major; data in its stored dtype.
struct View {
  DType dtype = DType::F32;
  const void* data = nullptr;
};

struct Preserve;       // core/preserve.h (SPEC §3 step 0)
struct PreserveBias;
struct PreserveStats;

// A whole edit of one tensor (or a block of its rows: everything is row-local).
struct EditJob {
  int64_t rows = 0;
  int64_t cols = 0;
  View base, old_, new_;
  View imp_old, imp_new;           // optional (data == nullptr: magnitude importance)
  const float* c_new = nullptr;    // strategy Custom: one per row
  const float* c_old = nullptr;
  // Output; out == nullptr means analyse only (geometry + coefficients, no weights).
  DType out_dtype = DType::F32;
  void* out = nullptr;
  RowStats stats{};                // per-row results, each optional
  // Names used in error messages ("base", "old", "new" by default; a tensor name for checkpoints).
  std::string tensor_name;
  int64_t row_offset = 0;          // added to row numbers in messages (block processing)
  // old_/new_ hold the task vectors themselves (tau, e.g. materialised LoRA rows), not weights:
  // geometry uses them as they are and the output is base + c_new*b + c_old*a.
  bool tau_given = false;
  // SPEC §3 step 0 (core/preserve.h): the tensor's preservation operator, or nullptr. The job's
  // rows must be the tensor's rows from a multiple of kPreserveBlockRows on (row_offset) for the
  // bytes to be independent of the caller's blocking. bias: the augmented form's bias (required when
  // preserve->augmented()). stats: the energy removed, added to (not reset) by the call.
  const Preserve* preserve = nullptr;
  const PreserveBias* preserve_bias = nullptr;
  PreserveStats* preserve_stats = nullptr;
};

enum class SimdLevel : uint8_t { Scalar = 0, AVX2 = 1, AVX512 = 2 };
const char* simd_name(SimdLevel s);
// The best level this CPU supports, capped by GEOEDIT_SIMD if set (scalar|avx2|avx512).
SimdLevel detect_simd();
// The level in use (detect_simd() unless forced by set_simd()).
SimdLevel active_simd();
// Force a level (tests); returns false if the CPU does not support it.
bool set_simd(SimdLevel s);
bool cpu_supports(SimdLevel s);

struct RunOptions {
  int threads = 0;                 // 0: all cores of the shared pool
  int simd = -1;                   // -1: active_simd(); else a SimdLevel forced for this call
};

// Runs SPEC §3 on every row. Deterministic: the same bytes for any thread count.
// Throws geoedit::Error. Outputs are fully written only when it returns normally.
void run_edit(const EditJob& job, const Params& params, const RunOptions& ro = RunOptions());
// The argument checks run_edit (and the CUDA path) make before any work; throws Error.
void validate_job(const EditJob& job, const Params& params);

// Threshold t on |cos| for a row width n (SPEC §3.2).
double region_threshold(const Params& p, int64_t n);

// Helpers exposed for the binding, the checkpoint pipeline and tests.
void convert(DType from, const void* src, DType to, void* dst, size_t count);
int hardware_threads();
// Element-wise out = b + s*c over n doubles with the shared pool (STREAM triad, for the bench).
double triad_gbps(size_t n, int threads, int reps);
// The fused row path of the ISA kernels (on by default; GEOEDIT_FUSED=0 starts with it off): a switch for
// benchmarks and tests, which compare both forms in one process. Same results either way.
void set_fused_rows(bool on);
bool fused_rows();
// How a fused row's output pass prepares the next row (the row pipeline): Sums, it sums the next row's blocks
// between its own; Prefetch, it prefetches the next row into L2 and sums it at its end; Off, neither (each row's
// sums in its own pass). Same results every way. Default: GEOEDIT_ROW_PIPELINE (sums|prefetch|off), else
// default_row_pipeline() (Prefetch on AMD CPUs, Sums elsewhere). A switch for benchmarks and tests.
enum class RowPipeline { Off = 0, Sums = 1, Prefetch = 2 };
RowPipeline default_row_pipeline();
void set_row_pipeline(RowPipeline m);
RowPipeline row_pipeline();
const char* row_pipeline_name(RowPipeline m);

const char* version();

}  // namespace geoedit

#endif  /* __cplusplus */
