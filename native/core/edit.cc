// SPEC §3 per row: geometry, region, trim, neuron importance, coefficients, output.
// One streaming pass: each input row is decoded once into per-thread scratch that stays
// in cache while the row's geometry, trim, weights and output are computed.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "dtype.h"
#include "kernels.h"
#include "pool.h"
#include "preserve.h"
#include "rules.h"

#ifndef GEOEDIT_VERSION
#define GEOEDIT_VERSION "0.0.0"
#endif

namespace geoedit {

const char* version() { return GEOEDIT_VERSION; }

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
  }
  return "?";
}

bool parse_dtype(const std::string& s, DType* out) {
  if (s == "f32") *out = DType::F32;
  else if (s == "f16") *out = DType::F16;
  else if (s == "bf16") *out = DType::BF16;
  else return false;
  return true;
}

bool parse_strategy(const std::string& s, Strategy* out) {
  if (s == "geoedit") *out = Strategy::GeoEdit;
  else if (s == "forget-then-learn") *out = Strategy::ForgetThenLearn;
  else if (s == "task-arithmetic") *out = Strategy::TaskArithmetic;
  else if (s == "custom") *out = Strategy::Custom;
  else return false;
  return true;
}

const char* error_code_name(ErrorCode c) {
  switch (c) {
    case ErrorCode::InvalidArgument: return "ERR_INVALID_OPTION";
    case ErrorCode::ShapeMismatch: return "ERR_SHAPE_MISMATCH";
    case ErrorCode::NonFinite: return "ERR_NON_FINITE";
    case ErrorCode::BadImportance: return "ERR_BAD_IMPORTANCE";
    case ErrorCode::BadSafetensors: return "ERR_BAD_SAFETENSORS";
    case ErrorCode::Io: return "ERR_IO";
    case ErrorCode::CudaUnavailable: return "ERR_CUDA_UNAVAILABLE";
    case ErrorCode::Cuda: return "ERR_CUDA";
    case ErrorCode::Internal: return "ERR_INTERNAL";
    case ErrorCode::Aborted: return "ERR_ABORTED";
    case ErrorCode::BadStatistics: return "ERR_BAD_STATISTICS";
    case ErrorCode::NonFiniteOutput: return "ERR_NON_FINITE_OUTPUT";
  }
  return "ERR_INTERNAL";
}

void apply_paper_preset(Params* p) {
  p->keep_orthogonal = 0.0;
  p->fuse_aligned = 1.0;
  p->forget_conflicting = 1.0;
  p->kappa = 1.0;
}

namespace {
[[noreturn]] void bad_option(const char* name, const std::string& expected, double got) {
  std::ostringstream os;
  os << "Expected " << expected << " for option '" << name << "' but received " << got;
  ErrorDetails d;
  d.option = name;
  throw Error(ErrorCode::InvalidArgument, os.str(), d);
}
}  // namespace

void validate_params(const Params& p) {
  if (!std::isfinite(p.scale)) bad_option("scale", "a finite number", p.scale);
  if (!(p.kappa >= 0) || !std::isfinite(p.kappa)) bad_option("kappa", "a finite number >= 0", p.kappa);
  if (p.band_degrees >= 0 && !(p.band_degrees <= 90)) bad_option("bandDegrees", "a number in [0, 90]", p.band_degrees);
  if (!std::isfinite(p.keep_orthogonal)) bad_option("keepOrthogonal", "a finite number", p.keep_orthogonal);
  if (!std::isfinite(p.fuse_aligned)) bad_option("fuseAligned", "a finite number", p.fuse_aligned);
  if (!std::isfinite(p.forget_conflicting)) bad_option("forgetConflicting", "a finite number", p.forget_conflicting);
  if (!std::isfinite(p.lambda)) bad_option("lambda", "a finite number", p.lambda);
  if (!(p.density > 0 && p.density <= 1)) bad_option("density", "a number in (0, 1]", p.density);
  if (!(p.temperature > 0) || !std::isfinite(p.temperature)) bad_option("temperature", "a finite number > 0", p.temperature);
}

double region_threshold(const Params& p, int64_t n) { return row_threshold(p, n); }

void convert(DType from, const void* src, DType to, void* dst, size_t count) {
  if (from == to) { std::memcpy(dst, src, count * dtype_size(from)); return; }
  const Kernels& K = kernels_for(active_simd());
  const size_t block = 4096;
  std::vector<float> tmp(std::min(count, block));
  const char* s = static_cast<const char*>(src);
  char* d = static_cast<char*>(dst);
  for (size_t i = 0; i < count; i += block) {
    const size_t c = std::min(block, count - i);
    K.decode(from, s + i * dtype_size(from), tmp.data(), int64_t(c));
    K.encode(tmp.data(), to, d + i * dtype_size(to), int64_t(c));
  }
}

int hardware_threads() { return pool_threads(); }

namespace {

struct Scratch {
  std::vector<float> base, a, b, ea, eb, zero;
  std::vector<uint32_t> hist, cand;
  TrimHint hint_a, hint_b;
  void ensure(int64_t n) {
    const size_t s = size_t(std::max<int64_t>(n, 1));
    if (a.size() < s) { base.resize(s); a.resize(s); b.resize(s); ea.resize(s); eb.resize(s); zero.assign(s, 0.0f); cand.resize(s + 16); }
    if (hist.size() < 2048) hist.resize(2048);
  }
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

const char* which_name(int w) { return w == 0 ? "base" : (w == 1 ? "old" : "new"); }

[[noreturn]] void throw_non_finite(const EditJob& job, int64_t i, const float* rows[3]) {
  const int64_t n = job.cols;
  std::ostringstream os;
  const std::string tn = job.tensor_name.empty() ? std::string() : ("tensor '" + job.tensor_name + "': ");
  for (int w = 0; w < 3; ++w)
    for (int64_t j = 0; j < n; ++j)
      if (!std::isfinite(rows[w][j])) {
        os << tn << "non-finite value (" << rows[w][j] << ") in the " << which_name(w) << " weights at row "
           << (i + job.row_offset) << ", column " << j << "; pass allowNonFinite to edit it anyway";
        throw Error(ErrorCode::NonFinite, os.str(), tensor_details(job.tensor_name, i + job.row_offset, j));
      }
  os << tn << "the task vector overflows f32 at row " << (i + job.row_offset)
     << " (old or new differs from base by more than the f32 range); pass allowNonFinite to edit it anyway";
  throw Error(ErrorCode::NonFinite, os.str(), tensor_details(job.tensor_name, i + job.row_offset));
}

// SPEC §5: an output that overflows its dtype. Recomputes the row as the output kernel does
// (f32, no FMA) to name the first column.
[[noreturn]] void throw_non_finite_output(const EditJob& job, int64_t i, const float* fb, const float* a, const float* b,
                                          float cn, float co) {
  const int64_t n = job.cols;
  const uint32_t lim = non_finite_bits(job.out_dtype);
  int64_t col = 0;
  float v = 0;
  for (int64_t j = 0; j < n; ++j) {
    const float o = (cn == 0.0f && co == 0.0f) ? fb[j] : (fb[j] + cn * b[j]) + co * a[j];
    if (abs_bits(o) >= lim) { col = j; v = o; break; }
  }
  std::ostringstream os;
  if (!job.tensor_name.empty()) os << "tensor '" << job.tensor_name << "': ";
  os << "the output overflows " << dtype_name(job.out_dtype) << " at row " << (i + job.row_offset) << ", column " << col
     << " (" << v << ", with coefficients " << cn << " and " << co
     << "); lower scale, choose a wider outDtype, or pass allowNonFiniteOutput to write it anyway";
  throw Error(ErrorCode::NonFiniteOutput, os.str(), tensor_details(job.tensor_name, i + job.row_offset, col));
}

void check_importance(const EditJob& job, const char* which, const float* e, int64_t n, int64_t i) {
  for (int64_t j = 0; j < n; ++j)
    if (!(e[j] >= 0) || !std::isfinite(e[j])) {
      std::ostringstream os;
      if (!job.tensor_name.empty()) os << "tensor '" << job.tensor_name << "': ";
      os << "importance" << which << " must be finite and >= 0, but row " << (i + job.row_offset) << ", column " << j
         << " is " << e[j];
      throw Error(ErrorCode::BadImportance, os.str(), tensor_details(job.tensor_name, i + job.row_offset, j));
    }
}

// a = old - base, b = new - base for rows already in f32 (a and b may alias old and new), with the
// f64 sums: the fused first-pass kernel with every dtype f32 and no decoded base to keep.
inline void f32_stats(const Kernels& K, const float* base, const float* old_, const float* new_, float* a, float* b,
                      int64_t n, double* dot, double* na, double* nb) {
  K.stats_raw(DType::F32, base, DType::F32, old_, DType::F32, new_, n, nullptr, a, b, dot, na, nb);
}

std::atomic<bool>& fused_switch() {
  static std::atomic<bool> on{[] {
    const char* e = std::getenv("GEOEDIT_FUSED");
    return !(e && std::strcmp(e, "0") == 0);
  }()};
  return on;
}

// The row pipeline's form (kernels.h NextRowStats): GEOEDIT_ROW_PIPELINE=sums|prefetch|off (another value: as
// unset), else by CPU: prefetch on AMD (on a Zen 4 VM 1.3-1.5x the sums form for bf16 at density 1, within 4%
// of it elsewhere: docs/performance.md), sums elsewhere (1.20-1.25x over no pipeline on the Intel VM it was
// tuned on; the prefetch form is not measured there).
std::atomic<int>& pipeline_switch() {
  static std::atomic<int> mode{[] {
    const char* e = std::getenv("GEOEDIT_ROW_PIPELINE");
    if (e && std::strcmp(e, "sums") == 0) return int(RowPipeline::Sums);
    if (e && std::strcmp(e, "prefetch") == 0) return int(RowPipeline::Prefetch);
    if (e && std::strcmp(e, "off") == 0) return int(RowPipeline::Off);
    return int(default_row_pipeline());
  }()};
  return mode;
}

void process_rows(const EditJob& job, const Params& p, const Kernels& K, int64_t r0, int64_t r1) {
  const int64_t n = job.cols;
  Scratch& s = scratch();
  s.ensure(n);
  const double t = region_threshold(p, n);
  const bool trim = p.density < 1.0 && n > 0;
  const int64_t k = trim ? int64_t(keep_count(p.density, n)) : n;
  const bool has_imp = job.imp_old.data != nullptr;
  const size_t bs = dtype_size(job.base.dtype), os_ = dtype_size(job.old_.dtype), ns = dtype_size(job.new_.dtype);
  const size_t outs = dtype_size(job.out_dtype);
  // Outputs far larger than the caches get streaming stores (no read-for-ownership).
  const bool nt = uint64_t(job.rows) * uint64_t(n) * outs >= (uint64_t(32) << 20);
  // SPEC §5: outputs that overflow their dtype are an error unless the caller opts in
  // (allowNonFinite accepts non-finite inputs and so the non-finite outputs they lead to).
  const bool check_out = !p.allow_non_finite && !p.allow_non_finite_output;
  // The fused row path (kernels.h FusedRowKernels): the three raw rows of one dtype are read in place
  // and not decoded into the scratch, for rows edited by magnitude that are written out. A row whose
  // weights need both trimmed importances, or that trims both sides, or overflows its output dtype,
  // is decoded and takes the unfused steps below (the same selections and bytes, exact).
  const FusedRowKernels* F = fused_rows() ? K.fused : nullptr;
  const bool fusable = F && !job.tau_given && !has_imp && job.out && job.base.dtype == job.old_.dtype &&
                       job.base.dtype == job.new_.dtype && n <= (int64_t(1) << 30);
  auto row_ptr = [&](const View& v, size_t es, int64_t i, float* tmp) -> const float* {
    const char* src = static_cast<const char*>(v.data) + size_t(i) * size_t(n) * es;
    if (v.dtype == DType::F32) return reinterpret_cast<const float*>(src);
    K.decode(v.dtype, src, tmp, n);
    return tmp;
  };
  // The row pipeline: a fused row's output call also computes the next row's sums (kernels.h NextRowStats; in
  // the form row_pipeline() says), so that the next row's three input rows stream in from memory while this
  // row's output is computed on the cached ones; `next` holds them until that row (the same sums as its own
  // stats pass).
  const RowPipeline pipeline = row_pipeline();
  NextRowStats next{nullptr, nullptr, nullptr};
  next.sums = pipeline == RowPipeline::Sums;
  bool have_next = false;
  for (int64_t i = r0; i < r1; ++i) {
    double dot = 0, na = 0, nb = 0;
    float* a = s.a.data();
    float* b = s.b.data();
    const char* rb = static_cast<const char*>(job.base.data) + size_t(i) * size_t(n) * bs;
    const char* ro = static_cast<const char*>(job.old_.data) + size_t(i) * size_t(n) * os_;
    const char* rn = static_cast<const char*>(job.new_.data) + size_t(i) * size_t(n) * ns;
    const float* fb;
    bool decoded = true;  // a and b (and a base not in f32) are in the scratch
    if (fusable) {
      fb = job.base.dtype == DType::F32 ? reinterpret_cast<const float*>(rb) : s.base.data();
      if (have_next) {
        dot = next.dot;
        na = next.na;
        nb = next.nb;
        have_next = false;
      } else {
        F->stats(job.base.dtype, rb, ro, rn, n, &dot, &na, &nb);
      }
      decoded = false;
    } else if (job.tau_given) {
      // old/new already are the task vectors (a zero base makes a = old, b = new exactly).
      fb = row_ptr(job.base, bs, i, s.base.data());
      const float* fo = row_ptr(job.old_, os_, i, a);
      const float* fn = row_ptr(job.new_, ns, i, b);
      f32_stats(K, s.zero.data(), fo, fn, a, b, n, &dot, &na, &nb);
    } else {
      // One fused pass over the three input rows; an f32 base is read again from the input
      // (still in cache) by the output stage, any other dtype is kept decoded in the scratch.
      const bool base_f32 = job.base.dtype == DType::F32;
      fb = base_f32 ? reinterpret_cast<const float*>(rb) : s.base.data();
      K.stats_raw(job.base.dtype, rb, job.old_.dtype, ro, job.new_.dtype, rn, n, base_f32 ? nullptr : s.base.data(), a, b,
                  &dot, &na, &nb);
    }
    const bool finite = sums_finite(dot, na, nb);
    if (!finite && !p.allow_non_finite) {
      // Re-decode the raw rows (the scratch now holds task vectors) and name the first bad value.
      const size_t nn = static_cast<size_t>(n);
      std::vector<float> db(nn), dol(nn), dnw(nn);
      kScalarKernels.decode(job.base.dtype, rb, db.data(), n);
      kScalarKernels.decode(job.old_.dtype, ro, dol.data(), n);
      kScalarKernels.decode(job.new_.dtype, rn, dnw.data(), n);
      const float* rows[3] = {db.data(), dol.data(), dnw.data()};
      throw_non_finite(job, i, rows);
    }
    // The scratch rows for the unfused steps of a fused row (its sums are kept: the ones the row used).
    auto decode_rows = [&]() {
      if (decoded) return;
      double d2, x2, y2;
      K.stats_raw(job.base.dtype, rb, job.old_.dtype, ro, job.new_.dtype, rn, n,
                  job.base.dtype == DType::F32 ? nullptr : s.base.data(), a, b, &d2, &x2, &y2);
      decoded = true;
    };
    // The fused select and output assume finite rows (kernels.h): a row with a non-finite value
    // (allowNonFinite) takes the unfused steps.
    if (!finite) decode_rows();
    const double cosv = row_cos(dot, na, nb);
    const Region region = row_region(cosv, t);

    // Importance and trimming (SPEC §3.3, §3.4).
    double sa = 0, sb = 0;
    bool have_s = false;
    // With magnitude importance the trim's kept sum of e^2 is the trimmed row's sum of squares
    // (-1: that side was not trimmed by magnitude).
    double kept_a = -1, kept_b = -1;
    // Trims row v by its magnitude (the default importance); returns the kept sum of squares.
    // The hints carry each side's threshold to the thread's next row (kernels.h TrimHint).
    auto trim_by_magnitude = [&](float* v, float* e) {
      TrimHint& h = v == a ? s.hint_a : s.hint_b;
      h.rms = float(std::sqrt((v == a ? na : nb) / double(n)));
      return K.trim_mag(v, n, k, s.cand.data(), s.hist.data(), e, &h);
    };
    auto compute_s = [&]() {
      decode_rows();
      if (!trim && !has_imp) {
        sa = n > 0 ? std::sqrt(na / double(n)) : 0;
        sb = n > 0 ? std::sqrt(nb / double(n)) : 0;
      } else {
        float* ea = s.ea.data();
        float* eb = s.eb.data();
        double ssa, ssb;
        if (has_imp) {
          const float* ia = row_ptr(job.imp_old, dtype_size(job.imp_old.dtype), i, ea);
          const float* ib = row_ptr(job.imp_new, dtype_size(job.imp_new.dtype), i, eb);
          check_importance(job, "Old", ia, n, i);
          check_importance(job, "New", ib, n, i);
          if (ia != ea) std::memcpy(ea, ia, size_t(n) * 4);
          if (ib != eb) std::memcpy(eb, ib, size_t(n) * 4);
          ssa = K.trim(ea, a, n, k, s.cand.data(), s.hist.data());
          ssb = K.trim(eb, b, n, k, s.cand.data(), s.hist.data());
        } else {
          kept_a = ssa = trim_by_magnitude(a, ea);
          kept_b = ssb = trim_by_magnitude(b, eb);
        }
        sa = k > 0 ? std::sqrt(ssa / double(k)) : 0;
        sb = k > 0 ? std::sqrt(ssb / double(k)) : 0;
      }
      have_s = true;
    };
    // With importance tensors, s_a/s_b (and the importance checks) always run. With magnitude
    // importance, trimming waits for the coefficients: unless the weights need the trimmed
    // importances, a side whose coefficient is 0 is not trimmed at all (0 times the row is 0
    // either way), which halves the work for the strategies that never use τold.
    if (has_imp) compute_s();
    auto w_old = [&]() {
      if (!have_s) compute_s();
      return importance_w_old(sa, sb, p.temperature);
    };

    double cn = 0, co = 0;
    const bool custom = p.strategy == Strategy::Custom;
    row_coefficients(p, region, custom ? double(job.c_new[i]) : 0.0, custom ? double(job.c_old[i]) : 0.0, w_old, &cn, &co);
    const float fcn = float(cn), fco = float(co);
    bool written = false;
    if (!decoded && !(fcn == 0.0f && fco == 0.0f) && !(trim && fcn != 0.0f && fco != 0.0f)) {
      // Fused: at most one side trimmed (the one whose coefficient is not 0), selected from the raw rows.
      // With the row pipeline on, the select and the output prepare the next row of this chunk.
      const bool pipelined = pipeline != RowPipeline::Off && i + 1 < r1;
      RowSelection sel{0, n};  // k >= n keeps every entry
      const bool trim_a = trim && fco != 0.0f, trim_b = trim && fcn != 0.0f;
      if ((trim_a || trim_b) && k < n) {
        TrimHint& h = trim_a ? s.hint_a : s.hint_b;
        h.rms = float(std::sqrt((trim_a ? na : nb) / double(n)));
        sel = F->select(job.base.dtype, rb, trim_a ? ro : rn, n, k, s.cand.data(), &h, pipelined);
      }
      char* dst = static_cast<char*>(job.out) + size_t(i) * size_t(n) * outs;
      double ka = -1, kb = -1;
      have_next = pipelined;
      if (have_next) {
        next.base = rb + size_t(n) * bs;
        next.old_ = ro + size_t(n) * os_;
        next.new_ = rn + size_t(n) * ns;
      }
      const uint32_t mx = F->output(job.base.dtype, rb, ro, rn, n, fcn, fco, trim_a ? &sel : nullptr, trim_b ? &sel : nullptr,
                                    &ka, &kb, job.out_dtype, dst, nt, have_next ? &next : nullptr);
      if (trim_a) kept_a = ka;
      if (trim_b) kept_b = kb;
      // a non-finite output is written by the unfused steps (which name an overflow, unless allowed)
      written = mx < non_finite_bits(job.out_dtype);
    }
    if (!written && !decoded && !(fcn == 0.0f && fco == 0.0f && job.base.dtype == job.out_dtype)) decode_rows();
    if (trim && !have_s && !written && decoded) {
      if (fco != 0.0f) kept_a = trim_by_magnitude(a, s.ea.data());
      if (fcn != 0.0f) kept_b = trim_by_magnitude(b, s.eb.data());
    }

    if (job.out && !written) {
      char* dst = static_cast<char*>(job.out) + size_t(i) * size_t(n) * outs;
      uint32_t mx = 0;
      if (fcn == 0.0f && fco == 0.0f) {
        if (job.base.dtype == job.out_dtype) {
          std::memcpy(dst, static_cast<const char*>(job.base.data) + size_t(i) * size_t(n) * bs, size_t(n) * bs);
        } else {
          K.encode(fb, job.out_dtype, dst, n);
          if (check_out) mx = max_abs_bits(fb, n);  // e.g. f32 values above the f16 range
        }
      } else {
        mx = (nt ? K.output_nt : K.output)(fb, a, b, fcn, fco, n, job.out_dtype, dst);
      }
      if (check_out && mx >= non_finite_bits(job.out_dtype)) throw_non_finite_output(job, i, fb, a, b, fcn, fco);
    }
    put_row(job.stats, i, cosv, uint8_t(region), fcn, fco, na, nb);
    if (job.stats.delta_sq) {
      double ta = na, tb = nb, td = dot;
      if (trim) {
        if (fco == 0.0f && kept_b >= 0) {
          tb = kept_b;  // only cn^2 * tb counts: no pass over the row
          ta = td = 0;
        } else if (fcn == 0.0f && kept_a >= 0) {
          ta = kept_a;
          tb = td = 0;
        } else {
          // The SIMD stats kernel against a zero base: a - 0 and b - 0 are a and b exactly.
          decode_rows();
          f32_stats(K, s.zero.data(), a, b, a, b, n, &td, &ta, &tb);
        }
      }
      job.stats.delta_sq[i] = applied_energy(fcn, fco, td, ta, tb);
    }
  }
  if (nt) std::atomic_thread_fence(std::memory_order_seq_cst);  // order the streaming stores
}

// SPEC §3 step 0 fused into the row pipeline: per group of R rows (up to kPreserveGroupRows on the CPU,
// fixed from the job's first row, the last zero-padded to a multiple of kPreserveBlockRows), the raw
// task vectors of both sides are formed in one scratch [2R, d] (old rows, then new rows; d = n + 1 with
// the bias element last in the augmented form), multiplied by P in one GEMM (OpenBLAS or Eigen in row
// tiles on the pool, or a projector such as cuBLAS), and the preserved rows go through
// process_rows as task vectors (tau_given): geometry, regions, trim, weights and output on the
// preserved rows, the base untouched. Energies are per-row values summed in row order (the same sums
// for any thread count).
struct PreserveScratch {
  std::vector<float> x, y, zero;
  std::vector<double> e;  // per-row energies of one block: [4 * R] (old before, new before, bias old, bias new)
  void ensure(int64_t R, int64_t d, int64_t n) {
    const size_t need = size_t(2 * R * d);
    if (x.size() < need) { x.resize(need); y.resize(need); }
    if (zero.size() < size_t(n)) zero.assign(size_t(n), 0.0f);
    if (e.size() < size_t(4 * R)) e.resize(size_t(4 * R));
  }
};

inline View view_at(const View& v, int64_t r0, int64_t n) {
  View o = v;
  if (o.data) o.data = static_cast<const char*>(v.data) + size_t(r0) * size_t(n) * dtype_size(v.dtype);
  return o;
}

// Rows [i0, i1) of the block starting at r0: the raw task vectors into X (rows ii and R + ii), their
// energies into e[4*ii ...]. Throws on a non-finite row unless allowed (naming the row).
void preserve_fill(const EditJob& job, const Params& p, const Kernels& K, int64_t r0, int64_t i0, int64_t i1, int64_t R,
                   float* X, const float* zero, double* e) {
  const int64_t n = job.cols, d = job.preserve->dim;
  const bool aug = job.preserve->augmented();
  const size_t bs = dtype_size(job.base.dtype), os_ = dtype_size(job.old_.dtype), ns = dtype_size(job.new_.dtype);
  auto elem = [&](const View& v, int64_t i) {
    float x;
    K.decode(v.dtype, static_cast<const char*>(v.data) + size_t(i) * dtype_size(v.dtype), &x, 1);
    return x;
  };
  for (int64_t ii = i0; ii < i1; ++ii) {
    const int64_t i = r0 + ii;
    float* a = X + ii * d;
    float* b = X + (R + ii) * d;
    const char* rb = static_cast<const char*>(job.base.data) + size_t(i) * size_t(n) * bs;
    const char* ro = static_cast<const char*>(job.old_.data) + size_t(i) * size_t(n) * os_;
    const char* rn = static_cast<const char*>(job.new_.data) + size_t(i) * size_t(n) * ns;
    double dot = 0, na = 0, nb = 0;
    if (job.tau_given) K.stats_raw(DType::F32, zero, job.old_.dtype, ro, job.new_.dtype, rn, n, nullptr, a, b, &dot, &na, &nb);
    else K.stats_raw(job.base.dtype, rb, job.old_.dtype, ro, job.new_.dtype, rn, n, nullptr, a, b, &dot, &na, &nb);
    if (!sums_finite(dot, na, nb) && !p.allow_non_finite) {
      const size_t nn = size_t(n);
      std::vector<float> db(nn, 0.0f), dol(nn), dnw(nn);
      if (!job.tau_given) kScalarKernels.decode(job.base.dtype, rb, db.data(), n);
      kScalarKernels.decode(job.old_.dtype, ro, dol.data(), n);
      kScalarKernels.decode(job.new_.dtype, rn, dnw.data(), n);
      const float* rows[3] = {db.data(), dol.data(), dnw.data()};
      throw_non_finite(job, i, rows);
    }
    double* er = e + 4 * ii;
    er[0] = na;
    er[1] = nb;
    er[2] = er[3] = 0;
    if (aug) {
      const PreserveBias* bias = job.preserve_bias;
      const float bb = elem(bias->base, i);
      const float ab = elem(bias->old_, i) - bb, nbv = elem(bias->new_, i) - bb;
      if ((!std::isfinite(ab) || !std::isfinite(nbv)) && !p.allow_non_finite) {
        std::ostringstream m;
        m << "tensor '" << job.tensor_name << "': non-finite bias task vector at element " << (i + job.row_offset)
          << " (the bias is preserved with the weight's row); pass allowNonFinite to edit it anyway";
        throw Error(ErrorCode::NonFinite, m.str(), tensor_details(job.tensor_name, i + job.row_offset));
      }
      a[n] = ab;
      b[n] = nbv;
      er[2] = double(ab) * ab;
      er[3] = double(nbv) * nbv;
    }
  }
}

// After Y = X·P on the block at r0 (nr rows): the energies, the preserved bias out, rows compacted
// to n columns, then the row pipeline on the preserved rows (on `threads` threads).
void preserve_finish(const EditJob& job, const Params& p, const Kernels& K, int64_t r0, int64_t nr, int64_t R, float* Y,
                     const double* e, PreserveStats& st, int threads) {
  const int64_t n = job.cols, d = job.preserve->dim;
  const bool aug = job.preserve->augmented();
  st.rows += nr;
  for (int64_t ii = 0; ii < nr; ++ii) {
    const float* ya = Y + ii * d;
    const float* yb = Y + (R + ii) * d;
    double sa = 0, sb = 0;
    for (int64_t j = 0; j < n; ++j) { sa += double(ya[j]) * ya[j]; sb += double(yb[j]) * yb[j]; }
    st.old_before += e[4 * ii];
    st.new_before += e[4 * ii + 1];
    st.old_after += sa;
    st.new_after += sb;
    if (aug) {
      st.bias_old_before += e[4 * ii + 2];
      st.bias_new_before += e[4 * ii + 3];
      st.bias_old_after += double(ya[n]) * ya[n];
      st.bias_new_after += double(yb[n]) * yb[n];
      if (job.preserve_bias->tau_old_out) job.preserve_bias->tau_old_out[r0 + ii] = ya[n];
      if (job.preserve_bias->tau_new_out) job.preserve_bias->tau_new_out[r0 + ii] = yb[n];
    }
  }
  if (aug)  // rows of d = n + 1 -> rows of n (forward, in place)
    for (int64_t r = 1; r < 2 * R; ++r) std::memmove(Y + r * n, Y + r * d, size_t(n) * 4);
  EditJob sub = job;
  sub.rows = nr;
  sub.base = view_at(job.base, r0, n);
  sub.old_ = {DType::F32, Y};
  sub.new_ = {DType::F32, Y + R * n};
  sub.imp_old = view_at(job.imp_old, r0, n);
  sub.imp_new = view_at(job.imp_new, r0, n);
  if (job.c_new) sub.c_new = job.c_new + r0;
  if (job.c_old) sub.c_old = job.c_old + r0;
  if (job.out) sub.out = static_cast<char*>(job.out) + size_t(r0) * size_t(n) * dtype_size(job.out_dtype);
  sub.stats = rows_from(job.stats, r0);
  sub.row_offset = job.row_offset + r0;
  sub.tau_given = true;
  sub.preserve = nullptr;
  sub.preserve_bias = nullptr;
  sub.preserve_stats = nullptr;
  if (threads == 1) {
    process_rows(sub, p, K, 0, nr);
  } else {
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(n, 1));
    parallel_for(nr, grain, threads, [&](int64_t a, int64_t b) { process_rows(sub, p, K, a, b); });
  }
}

// project == nullptr: the CPU path: groups of kPreserveGroupRows rows per side, one after the other, the
// last one padded to a multiple of kPreserveBlockRows only; each group's GEMM on the pool in row tiles
// fixed by the group's size (preserve_rows_group: OpenBLAS or Eigen, one thread per call), its fill and
// row pipeline on the pool too. Otherwise the projector (a device) takes blocks of block_rows rows per side one after the
// other (each padded to the full block_rows: one fixed shape) and the pool runs the rows of each block.
void run_edit_preserved(const EditJob& job, const Params& p, const Kernels& K, SimdLevel level, int threads,
                        const RowProjector* project, int64_t block_rows) {
  const Preserve& P = *job.preserve;
  const int64_t d = P.dim, G = project ? block_rows : kPreserveGroupRows;
  const int64_t ngroups = (job.rows + G - 1) / G;
  std::vector<PreserveStats> part(static_cast<size_t>(ngroups));
  PreserveScratch s;
  s.ensure(project ? G : std::min(G, ((job.rows + kPreserveBlockRows - 1) / kPreserveBlockRows) * kPreserveBlockRows), d, job.cols);
  for (int64_t g = 0; g < ngroups; ++g) {
    const int64_t r0 = g * G, nr = std::min(G, job.rows - r0);
    // Rows per side in this group's GEMM: the stride between the old and the new rows in X and Y.
    const int64_t R = project ? G : ((nr + kPreserveBlockRows - 1) / kPreserveBlockRows) * kPreserveBlockRows;
    float* X = s.x.data();
    if (nr < R) {
      std::fill(X + nr * d, X + R * d, 0.0f);
      std::fill(X + (R + nr) * d, X + 2 * R * d, 0.0f);
    }
    if (threads == 1 || nr <= 16) preserve_fill(job, p, K, r0, 0, nr, R, X, s.zero.data(), s.e.data());
    else parallel_for(nr, 16, threads, [&](int64_t a, int64_t b) { preserve_fill(job, p, K, r0, a, b, R, X, s.zero.data(), s.e.data()); });
    if (project) {
      (*project)(P, X, 2 * R, s.y.data());
      part[size_t(g)].gpu_rows = nr;
    } else {
      preserve_rows_group(P, X, 2 * R, s.y.data(), level, threads);
    }
    preserve_finish(job, p, K, r0, nr, R, s.y.data(), s.e.data(), part[size_t(g)], threads);
  }
  if (job.preserve_stats)
    for (const PreserveStats& st : part) job.preserve_stats->add(st);
}

}  // namespace

void validate_job(const EditJob& job, const Params& params) {
  validate_params(params);
  if (job.rows < 0 || job.cols < 0) throw Error(ErrorCode::InvalidArgument, "rows and cols must be >= 0");
  if (job.rows > 0 && job.cols > 0 && (!job.base.data || !job.old_.data || !job.new_.data))
    throw Error(ErrorCode::InvalidArgument, "base, old and new data are required");
  if (params.strategy == Strategy::Custom && job.rows > 0 && (!job.c_new || !job.c_old))
    throw Error(ErrorCode::InvalidArgument, "strategy 'custom' needs coefficients { cNew, cOld } with one value per row",
                tensor_details(job.tensor_name));
  if ((job.imp_old.data == nullptr) != (job.imp_new.data == nullptr))
    throw Error(ErrorCode::InvalidArgument, "importanceOld and importanceNew must be given together");
  if (job.preserve) {
    const PreserveBias* b = job.preserve_bias;
    const bool has_bias = b && b->base.data && b->old_.data && b->new_.data;
    check_preserve_fits(*job.preserve, job.cols, has_bias, job.tensor_name);
  }
}

void run_edit(const EditJob& job, const Params& params, const RunOptions& ro) {
  validate_job(job, params);
  if (job.rows == 0) return;
  SimdLevel level = ro.simd >= 0 ? SimdLevel(ro.simd) : active_simd();
  const Kernels& K = kernels_for(level);
  const int64_t cols = std::max<int64_t>(job.cols, 1);
  // 2^17 elements a chunk (32 rows of 4096): process_rows' row pipeline starts again in each chunk
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 17) / cols);
  int threads = ro.threads;
  if (job.preserve) {
    run_edit_preserved(job, params, K, level, threads, nullptr, kPreserveGroupRows);
    return;
  }
  if (job.rows * cols < (int64_t(1) << 15)) threads = 1;
  parallel_for(job.rows, grain, threads, [&](int64_t r0, int64_t r1) { process_rows(job, params, K, r0, r1); });
}

void run_edit_projected(const EditJob& job, const Params& params, const RunOptions& ro, const RowProjector& project,
                        int64_t block_rows) {
  validate_job(job, params);
  if (!job.preserve) throw Error(ErrorCode::Internal, "run_edit_projected needs a preservation operator");
  if (block_rows < 1 || block_rows % kPreserveBlockRows != 0)
    throw Error(ErrorCode::Internal, "run_edit_projected: block_rows must be a multiple of kPreserveBlockRows");
  if (job.rows == 0) return;
  const SimdLevel level = ro.simd >= 0 ? SimdLevel(ro.simd) : active_simd();
  run_edit_preserved(job, params, kernels_for(level), level, ro.threads, &project, block_rows);
}

void set_fused_rows(bool on) { fused_switch().store(on); }
bool fused_rows() { return fused_switch().load(); }

RowPipeline default_row_pipeline() {
#if defined(GEOEDIT_X86)
  __builtin_cpu_init();
  if (__builtin_cpu_is("amd")) return RowPipeline::Prefetch;
#endif
  return RowPipeline::Sums;
}
void set_row_pipeline(RowPipeline m) { pipeline_switch().store(int(m)); }
RowPipeline row_pipeline() { return RowPipeline(pipeline_switch().load()); }
const char* row_pipeline_name(RowPipeline m) {
  switch (m) {
    case RowPipeline::Sums: return "sums";
    case RowPipeline::Prefetch: return "prefetch";
    default: return "off";
  }
}

double triad_gbps(size_t n, int threads, int reps) {
  std::unique_ptr<double[]> a(new double[n]), b(new double[n]), c(new double[n]);
  const int64_t grain = 1 << 16;
  parallel_for(int64_t(n), grain, threads, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) { a[i] = 0; b[i] = 1.0; c[i] = 2.0; }
  });
  double best = 1e30;
  const double q = 3.0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    parallel_for(int64_t(n), grain, threads, [&](int64_t s, int64_t e) {
      double* __restrict pa = a.get();
      const double* __restrict pb = b.get();
      const double* __restrict pc = c.get();
      for (int64_t i = s; i < e; ++i) pa[i] = pb[i] + q * pc[i];
    });
    auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
  }
  volatile double sink = a[n / 2];
  (void)sink;
  return 3.0 * 8.0 * double(n) / best / 1e9;
}

}  // namespace geoedit
