// SPEC §4: LoRA geometry in factor space, materialised rows, and merged full weights.
#include "lora.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <vector>

#include "dtype.h"
#include "kernels.h"
#include "pool.h"
#include "rules.h"

namespace geoedit {
namespace {

// Element-wise loops below are compiled without FMA contraction, so every clone rounds exactly like
// the baseline one; the reductions use a fixed set of partial sums written out in the code. The
// SIMD clones change speed, never bytes.
#if defined(GEOEDIT_X86) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && defined(__GLIBC__)
#define GEOEDIT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define GEOEDIT_CLONES
#endif

// sum_j x[j]*y[j] in f64 with eight fixed partial sums (lane q takes j = q mod 8): the order
// depends only on n, never on threads or the instruction set.
GEOEDIT_CLONES double dot_f32_f64(const float* __restrict x, const float* __restrict y, int64_t n) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int q = 0; q < 8; ++q) s[q] += double(x[j + q]) * double(y[j + q]);
  for (int q = 0; j < n; ++j, ++q) s[q] += double(x[j]) * double(y[j]);
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// x^T G y for small r, with Gt = G transposed ([ry, rx] row-major: Gt[l*rx + k] = G[k, l]):
// u = G y as rx-wide axpys over l (element-wise), then x . u with four fixed partial sums.
GEOEDIT_CLONES double quad(const double* __restrict Gt, const float* __restrict x, int64_t rx, const float* __restrict y, int64_t ry,
                           double* __restrict u) {
  for (int64_t k = 0; k < rx; ++k) u[k] = 0;
  for (int64_t l = 0; l < ry; ++l) {
    const double yl = double(y[l]);
    const double* g = Gt + l * rx;
    for (int64_t k = 0; k < rx; ++k) u[k] += g[k] * yl;
  }
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t k = 0;
  for (; k + 4 <= rx; k += 4) {
    s0 += double(x[k]) * u[k];
    s1 += double(x[k + 1]) * u[k + 1];
    s2 += double(x[k + 2]) * u[k + 2];
    s3 += double(x[k + 3]) * u[k + 3];
  }
  for (; k < rx; ++k) s0 += double(x[k]) * u[k];
  return (s0 + s1) + (s2 + s3);
}

void check_side(const LoraSide& s, const char* which, const std::string& tn) {
  if (s.r < 0 || (s.r > 0 && (!s.L || !s.R))) {
    throw Error(ErrorCode::InvalidArgument, "tensor '" + tn + "': the " + which + " adapter's factors are missing",
                tensor_details(tn));
  }
  if (s.r > 0 && !std::isfinite(s.scale)) {
    std::ostringstream os;
    os << "tensor '" << tn << "': the " << which << " adapter's scale is not finite (" << s.scale << ")";
    throw Error(ErrorCode::InvalidArgument, os.str(), tensor_details(tn));
  }
}

int threads_for(const RunOptions& ro, int64_t work) { return work < (int64_t(1) << 16) ? 1 : ro.threads; }

}  // namespace

void run_lora_geometry(const LoraJob& job, const Params& p, const RunOptions& ro) {
  validate_params(p);
  if (p.density != 1.0)
    throw Error(ErrorCode::InvalidArgument,
                "LoRA geometry in factor space needs density 1 (trimming needs materialised rows)");
  if (job.rows < 0 || job.cols < 0) throw Error(ErrorCode::InvalidArgument, "rows and cols must be >= 0");
  check_side(job.old_, "old", job.tensor_name);
  check_side(job.new_, "new", job.tensor_name);
  if (p.strategy == Strategy::Custom && job.rows > 0 && (!job.c_new || !job.c_old))
    throw Error(ErrorCode::InvalidArgument, "strategy 'custom' needs coefficients { cNew, cOld } with one value per row");
  if (job.rows == 0) return;
  const int64_t n = job.cols;
  const bool ho = job.old_.present(), hn = job.new_.present();
  const int64_t ro_ = ho ? job.old_.r : 0, rn = hn ? job.new_.r : 0;

  // The three Gram matrices, one entry per task (symmetric ones: upper triangle, mirrored).
  std::vector<double> Gon(size_t(ro_ * rn))  /* transposed */, Goo(size_t(ro_ * ro_)), Gnn(size_t(rn * rn));
  struct Entry { uint8_t which; int32_t k, l; };
  std::vector<Entry> entries;
  entries.reserve(size_t(ro_ * rn + ro_ * (ro_ + 1) / 2 + rn * (rn + 1) / 2));
  for (int32_t k = 0; k < ro_; ++k)
    for (int32_t l = 0; l < rn; ++l) entries.push_back({0, k, l});
  for (int32_t k = 0; k < ro_; ++k)
    for (int32_t l = k; l < ro_; ++l) entries.push_back({1, k, l});
  for (int32_t k = 0; k < rn; ++k)
    for (int32_t l = k; l < rn; ++l) entries.push_back({2, k, l});
  const int64_t ne = int64_t(entries.size());
  if (ne > 0) {
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(n, 1));
    parallel_for(ne, grain, threads_for(ro, ne * n), [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) {
        const Entry& en = entries[size_t(e)];
        const float* x = (en.which == 2 ? job.new_.R : job.old_.R) + int64_t(en.k) * n;
        const float* y = (en.which == 0 ? job.new_.R : (en.which == 1 ? job.old_.R : job.new_.R)) + int64_t(en.l) * n;
        const double v = dot_f32_f64(x, y, n);
        if (en.which == 0) Gon[size_t(en.l * ro_ + en.k)] = v;  // stored transposed: [rn, ro]
        else if (en.which == 1) { Goo[size_t(en.k * ro_ + en.l)] = v; Goo[size_t(en.l * ro_ + en.k)] = v; }
        else { Gnn[size_t(en.k * rn + en.l)] = v; Gnn[size_t(en.l * rn + en.k)] = v; }
      }
    });
  }

  const double t = region_threshold(p, n);
  const double so = ho ? job.old_.scale : 0, sn = hn ? job.new_.scale : 0;
  const int64_t grain = std::max<int64_t>(64, (int64_t(1) << 14) / std::max<int64_t>(1, (ro_ + rn) * (ro_ + rn)));
  parallel_for(job.rows, grain, threads_for(ro, job.rows * (ro_ + rn) * (ro_ + rn)), [&](int64_t r0, int64_t r1) {
    std::vector<double> u(size_t(std::max<int64_t>(1, std::max(ro_, rn))));
    for (int64_t i = r0; i < r1; ++i) {
      const float* lo = ho ? job.old_.L + i * ro_ : nullptr;
      const float* ln = hn ? job.new_.L + i * rn : nullptr;
      double dot = 0, na = 0, nb = 0;
      // Goo and Gnn are symmetric: they are their own transposes.
      if (ho && hn) dot = so * sn * quad(Gon.data(), lo, ro_, ln, rn, u.data());
      if (ho) na = std::max(0.0, so * so * quad(Goo.data(), lo, ro_, lo, ro_, u.data()));
      if (hn) nb = std::max(0.0, sn * sn * quad(Gnn.data(), ln, rn, ln, rn, u.data()));
      const bool finite = std::isfinite(dot) && std::isfinite(na) && std::isfinite(nb);
      if (!finite && !p.allow_non_finite) {
        std::ostringstream os;
        os << "tensor '" << job.tensor_name << "': non-finite geometry at row " << i
           << " (the LoRA factors hold a non-finite value or overflow f64); pass allowNonFinite to edit it anyway";
        throw Error(ErrorCode::NonFinite, os.str(), tensor_details(job.tensor_name, i));
      }
      const double cosv = row_cos(dot, na, nb);
      const Region region = row_region(cosv, t);
      // Density 1, magnitude importance: s_a = ||a|| / sqrt(n) (SPEC §4).
      auto w_old = [&]() {
        const double sa = n > 0 ? std::sqrt(na / double(n)) : 0, sb = n > 0 ? std::sqrt(nb / double(n)) : 0;
        return importance_w_old(sa, sb, p.temperature);
      };
      double cn = 0, co = 0;
      const bool custom = p.strategy == Strategy::Custom;
      row_coefficients(p, region, custom ? double(job.c_new[i]) : 0.0, custom ? double(job.c_old[i]) : 0.0, w_old, &cn,
                       &co);
      const float fcn = float(cn), fco = float(co);
      put_row(job.stats, i, cosv, uint8_t(region), fcn, fco, na, nb);
      if (job.dot) job.dot[i] = dot;
      if (job.stats.delta_sq) job.stats.delta_sq[i] = applied_energy(fcn, fco, dot, na, nb);
    }
  });
}

namespace {

// acc[j] += s * x[j] in f64 (element-wise).
GEOEDIT_CLONES void axpy_f32(double* __restrict acc, const float* __restrict x, double s, int64_t n) {
  for (int64_t j = 0; j < n; ++j) acc[j] += s * double(x[j]);
}
GEOEDIT_CLONES void axpy_f64(double* __restrict acc, const double* __restrict x, double s, int64_t n) {
  for (int64_t j = 0; j < n; ++j) acc[j] += x[j] * s;
}

// acc[j] = sum_k l[k] * R[k, j] over j in [0, n), in f64, k in order.
void row_times_R(const float* l, const float* R, int64_t r, int64_t n, double* acc) {
  std::fill(acc, acc + n, 0.0);
  for (int64_t k = 0; k < r; ++k) axpy_f32(acc, R + k * n, double(l[k]), n);
}

}  // namespace

void lora_materialize(const LoraSide& side, int64_t cols, int64_t r0, int64_t r1, float* dst, const RunOptions& ro) {
  if (r1 <= r0) return;
  const int64_t n = cols;
  if (!side.present()) {
    std::memset(dst, 0, size_t(r1 - r0) * size_t(n) * 4);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, n * side.r));
  parallel_for(r1 - r0, grain, threads_for(ro, (r1 - r0) * n * side.r), [&](int64_t a, int64_t b) {
    std::vector<double> acc(size_t(std::max<int64_t>(n, 1)));
    for (int64_t q = a; q < b; ++q) {
      const int64_t i = r0 + q;
      row_times_R(side.L + i * side.r, side.R, side.r, n, acc.data());
      float* d = dst + q * n;
      for (int64_t j = 0; j < n; ++j) d[j] = float(side.scale * acc[j]);
    }
  });
}

void run_lora_merge(const LoraMergeJob& job, const RunOptions& ro) {
  check_side(job.old_, "old", job.tensor_name);
  check_side(job.new_, "new", job.tensor_name);
  const int64_t m = job.rows, n = job.cols;
  const int64_t stored_rows = job.transposed ? n : m, stored_cols = job.transposed ? m : n;
  if (job.s0 < 0 || job.s1 < job.s0 || job.s1 > stored_rows)
    throw Error(ErrorCode::InvalidArgument, "tensor '" + job.tensor_name + "': merge block out of range",
                tensor_details(job.tensor_name));
  if (job.s1 == job.s0) return;
  if (!job.c_new || !job.c_old || !job.base.data || !job.out)
    throw Error(ErrorCode::InvalidArgument, "tensor '" + job.tensor_name + "': merge needs coefficients, base and out",
                tensor_details(job.tensor_name));
  const Kernels& K = kernels_for(active_simd());
  const size_t bs = dtype_size(job.base.dtype), os = dtype_size(job.out_dtype);
  const uint32_t lim = job.allow_non_finite_output ? 0xFFFFFFFFu : non_finite_bits(job.out_dtype);
  // Stored row `row` overflowed out_dtype: name its first such column (v holds the f32 values).
  auto overflow = [&](int64_t row, const float* v, int64_t len) {
    int64_t col = 0;
    while (col + 1 < len && abs_bits(v[col]) < lim) ++col;
    std::ostringstream msg;
    msg << "tensor '" << job.tensor_name << "': the merged output overflows " << dtype_name(job.out_dtype) << " at row " << row
        << ", column " << col << " (" << v[col] << "); lower scale, choose a wider outDtype, or pass allowNonFiniteOutput to write it anyway";
    throw Error(ErrorCode::NonFiniteOutput, msg.str(), tensor_details(job.tensor_name, row, col));
  };
  const int64_t rsum = (job.old_.present() ? job.old_.r : 0) + (job.new_.present() ? job.new_.r : 0);

  if (!job.transposed) {
    // Stored row i is neuron i: materialise tau rows, then the core's own output kernel.
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, n * std::max<int64_t>(1, rsum)));
    parallel_for(job.s1 - job.s0, grain, threads_for(ro, (job.s1 - job.s0) * n * std::max<int64_t>(1, rsum)),
                 [&](int64_t q0, int64_t q1) {
      std::vector<double> acc(size_t(std::max<int64_t>(n, 1)));
      std::vector<float> a(size_t(std::max<int64_t>(n, 1))), b(a.size()), fb(a.size());
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t i = job.s0 + q;
        const char* src = static_cast<const char*>(job.base.data) + size_t(q) * size_t(n) * bs;
        char* dst = static_cast<char*>(job.out) + size_t(q) * size_t(n) * os;
        const float fcn = job.c_new[i], fco = job.c_old[i];
        if (fcn == 0.0f && fco == 0.0f) {
          if (job.base.dtype == job.out_dtype) { std::memcpy(dst, src, size_t(n) * bs); continue; }
          K.decode(job.base.dtype, src, fb.data(), n);
          K.encode(fb.data(), job.out_dtype, dst, n);
          if (max_abs_bits(fb.data(), n) >= lim) overflow(i, fb.data(), n);
          continue;
        }
        K.decode(job.base.dtype, src, fb.data(), n);
        for (int w = 0; w < 2; ++w) {
          const LoraSide& s = w == 0 ? job.old_ : job.new_;
          float* v = w == 0 ? a.data() : b.data();
          if (!s.present()) { std::fill(v, v + n, 0.0f); continue; }
          row_times_R(s.L + i * s.r, s.R, s.r, n, acc.data());
          for (int64_t j = 0; j < n; ++j) v[j] = float(s.scale * acc[j]);
        }
        if (K.output(fb.data(), a.data(), b.data(), fcn, fco, n, job.out_dtype, dst) >= lim) {
          for (int64_t j = 0; j < n; ++j) fb[size_t(j)] = (fb[size_t(j)] + fcn * b[size_t(j)]) + fco * a[size_t(j)];
          overflow(i, fb.data(), n);
        }
      }
    });
    return;
  }

  // fan_in_fan_out: stored row j is input unit j; element (j, i) belongs to neuron i.
  // tau[i, j] for all i is L * R[:, j]; pack L^T (f64) once so that loop runs over i.
  auto pack_LT = [&](const LoraSide& s) {
    std::vector<double> LT;
    if (!s.present()) return LT;
    LT.resize(size_t(s.r * m));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t k = 0; k < s.r; ++k) LT[size_t(k * m + i)] = double(s.L[i * s.r + k]);
    return LT;
  };
  const std::vector<double> LTo = pack_LT(job.old_), LTn = pack_LT(job.new_);
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, m * std::max<int64_t>(1, rsum)));
  parallel_for(job.s1 - job.s0, grain, threads_for(ro, (job.s1 - job.s0) * m * std::max<int64_t>(1, rsum)),
               [&](int64_t q0, int64_t q1) {
    std::vector<double> acc(size_t(std::max<int64_t>(m, 1)));
    std::vector<float> a(acc.size()), b(acc.size()), fb(acc.size()), o(acc.size());
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t j = job.s0 + q;
      const char* src = static_cast<const char*>(job.base.data) + size_t(q) * size_t(stored_cols) * bs;
      char* dst = static_cast<char*>(job.out) + size_t(q) * size_t(stored_cols) * os;
      K.decode(job.base.dtype, src, fb.data(), m);
      for (int w = 0; w < 2; ++w) {
        const LoraSide& s = w == 0 ? job.old_ : job.new_;
        const std::vector<double>& LT = w == 0 ? LTo : LTn;
        float* v = w == 0 ? a.data() : b.data();
        if (!s.present()) { std::fill(v, v + m, 0.0f); continue; }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t k = 0; k < s.r; ++k) axpy_f64(acc.data(), LT.data() + k * m, double(s.R[k * n + j]), m);
        for (int64_t i = 0; i < m; ++i) v[i] = float(s.scale * acc[size_t(i)]);
      }
      // Same operation order as the output kernel: (base + c_new*b) + c_old*a, no FMA.
      for (int64_t i = 0; i < m; ++i) {
        const float fcn = job.c_new[i], fco = job.c_old[i];
        if (fcn == 0.0f && fco == 0.0f) { o[size_t(i)] = fb[size_t(i)]; continue; }
        const float t0 = fb[size_t(i)] + fcn * b[size_t(i)];
        o[size_t(i)] = t0 + fco * a[size_t(i)];
      }
      K.encode(o.data(), job.out_dtype, dst, m);
      if (max_abs_bits(o.data(), m) >= lim) overflow(j, o.data(), m);
    }
  });
}

}  // namespace geoedit
