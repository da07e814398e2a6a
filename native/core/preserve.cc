// SPEC §3 step 0 (see preserve.h): validation, the f64 operator, the blocked f32 application.
#include "preserve.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <sstream>

#include "../cpu/preserve_la.h"
#include "geoedit/cuda.h"
#include "kernels.h"
#include "pool.h"

namespace geoedit {

const PreserveLa& preserve_la_for(SimdLevel level) {
#if defined(GEOEDIT_X86)
  if (level == SimdLevel::AVX512 && cpu_supports(SimdLevel::AVX512)) return kPreserveLaAvx512;
  if (level >= SimdLevel::AVX2 && cpu_supports(SimdLevel::AVX2)) return kPreserveLaAvx2;
#endif
  (void)level;
  return kPreserveLaBase;
}

namespace {

std::string who(const PreserveSpec& s) {
  std::string m = "tensor '" + s.tensor + "': preservation statistics";
  if (!s.source.empty()) m += " (" + s.source + ")";
  return m;
}

ErrorDetails details(const PreserveSpec& s, const char* option = nullptr) {
  ErrorDetails d = tensor_details(s.tensor);
  d.file = s.source;
  if (option) d.option = option;
  return d;
}

[[noreturn]] void fail(ErrorCode c, const PreserveSpec& s, const std::string& what) {
  throw Error(c, who(s) + ": " + what, details(s));
}

std::string shape_str(int64_t r, int64_t c) {
  std::ostringstream os;
  os << "[" << r << ", " << c << "]";
  return os.str();
}

// d must be n, or n + 1 with a bias beside the weight.
void check_width(const PreserveSpec& s, const char* what, int64_t r, int64_t c, int64_t d, int64_t n, bool has_bias,
                 bool square) {
  const bool ok_d = d == n || (d == n + 1 && has_bias);
  if ((square && r != c) || !ok_d) {
    std::ostringstream os;
    os << what << " has shape " << shape_str(r, c) << " but the weight's rows have " << n << " columns: expected ";
    if (square) os << shape_str(n, n);
    else os << "[N, " << n << "]";
    if (has_bias) os << (square ? ", or " + shape_str(n + 1, n + 1) : ", or [N, " + std::to_string(n + 1) + "]")
                     << " for the augmented input [x; 1] with the bias";
    else if (d == n + 1) os << " (" << (square ? shape_str(n + 1, n + 1) : "[N, n+1]")
                            << " is the augmented form, which needs a bias beside the weight)";
    throw Error(ErrorCode::ShapeMismatch, who(s) + ": " + os.str(), details(s));
  }
}

void check_finite(const PreserveSpec& s, const char* what, const float* x, int64_t r, int64_t c) {
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j) {
      const float v = x[i * c + j];
      if (!std::isfinite(v)) {
        std::ostringstream os;
        os << "non-finite value (" << v << ") in " << what << " at [" << i << ", " << j << "]";
        fail(ErrorCode::NonFinite, s, os.str());
      }
    }
}

// Symmetry check, then the symmetrised matrix in f64 (column-major = row-major: symmetric) into D.
// Returns the trace.
double load_symmetric(const PreserveSpec& s, const char* what, const float* C, int64_t d, double* D) {
  double maxdiag = 0;
  for (int64_t i = 0; i < d; ++i) maxdiag = std::max(maxdiag, std::fabs(double(C[i * d + i])));
  double tr = 0;
  for (int64_t i = 0; i < d; ++i) {
    const double cii = C[i * d + i];
    tr += cii;
    D[i * d + i] = cii;
    for (int64_t j = i + 1; j < d; ++j) {
      const double a = C[i * d + j], b = C[j * d + i];
      const double tol = 1e-4 * std::sqrt(std::fabs(cii * double(C[j * d + j]))) + 1e-6 * maxdiag;
      if (std::fabs(a - b) > tol) {
        std::ostringstream os;
        os << what << " is not symmetric: [" << i << ", " << j << "] = " << a << " but [" << j << ", " << i << "] = " << b
           << " (tolerance " << tol << ")";
        fail(ErrorCode::BadStatistics, s, os.str());
      }
      const double m = 0.5 * (a + b);
      D[i * d + j] = m;
      D[j * d + i] = m;
    }
  }
  return tr;
}

// Positive semi-definite up to a tolerance: a Cholesky of C + 1e-6·tr(C)·I succeeds unless C has an
// eigenvalue below about −1e-6·tr(C) (rounding in f32 statistics stays far above that). Factors W
// in place (the caller reloads it).
void check_psd(const PreserveSpec& s, const char* what, const std::function<bool(double*)>& factor, double* W, int64_t d,
               double tr) {
  double maxabs = 0;
  for (int64_t i = 0; i < d * d; ++i) maxabs = std::max(maxabs, std::fabs(W[i]));
  if (!(tr > 0)) {
    if (maxabs == 0) return;  // the zero matrix
    fail(ErrorCode::BadStatistics, s, std::string(what) + " is not positive semi-definite (its trace is " +
                                          std::to_string(tr) + " but it is not zero)");
  }
  const double delta = 1e-6 * tr;
  for (int64_t i = 0; i < d; ++i)
    if (W[i * d + i] < -delta) {
      std::ostringstream os;
      os << what << " is not positive semi-definite: diagonal element [" << i << ", " << i << "] is " << W[i * d + i];
      fail(ErrorCode::BadStatistics, s, os.str());
    }
  for (int64_t i = 0; i < d; ++i) W[i * d + i] += delta;
  if (!factor(W)) {
    std::ostringstream os;
    os << what << " is not positive semi-definite: it has an eigenvalue below -" << delta
       << " (1e-6 of its trace; a Cholesky factorisation of C + " << delta << "·I failed)";
    fail(ErrorCode::BadStatistics, s, os.str());
  }
}

bool given(const float* p, int64_t r, int64_t c) { return p != nullptr || r != 0 || c != 0; }

}  // namespace

void check_preserve_fits(const Preserve& p, int64_t cols, bool has_bias, const std::string& tensor) {
  if (p.cols != cols || (p.augmented() && !has_bias)) {
    std::ostringstream os;
    os << "tensor '" << tensor << "': the preservation operator was built for rows of " << p.cols << " columns"
       << (p.augmented() ? " with a bias ([x; 1])" : "") << " but the tensor's rows have " << cols << " columns"
       << (p.augmented() && !has_bias ? " and no bias was given" : "");
    throw Error(ErrorCode::ShapeMismatch, os.str(), tensor_details(tensor));
  }
}

std::shared_ptr<const Preserve> build_preserve(const PreserveSpec& s, const PreserveBuildOptions& bo) {
  static std::atomic<uint64_t> next_id{1};
  auto out = std::make_shared<Preserve>();
  Preserve& P = *out;
  P.id = next_id.fetch_add(1);
  P.tensor = s.tensor;
  P.cols = bo.cols;
  const int64_t n = bo.cols;
  const bool has_cov = given(s.cov, s.cov_rows, s.cov_cols), has_keys = given(s.keys, s.keys_rows, s.keys_cols);
  const bool has_basis = given(s.basis, s.basis_rows, s.basis_cols);
  const bool has_ecov = given(s.edit_cov, s.edit_cov_rows, s.edit_cov_cols);
  const bool has_ekeys = given(s.edit_keys, s.edit_keys_rows, s.edit_keys_cols);
  if (int(has_cov) + int(has_keys) + int(has_basis) != 1)
    fail(ErrorCode::BadStatistics, s, has_cov || has_keys || has_basis
                                          ? "give exactly one of cov, keys or basis"
                                          : "none of cov, keys or basis was given");
  if (has_basis && (has_ecov || has_ekeys)) fail(ErrorCode::BadStatistics, s, "editCov / edit keys go with cov or keys, not with basis");
  if (has_ecov && has_ekeys) fail(ErrorCode::BadStatistics, s, "give one of editCov or edit keys, not both");
  if (n < 1) fail(ErrorCode::ShapeMismatch, s, "the weight has no columns");
  const SimdLevel level = bo.simd >= 0 ? SimdLevel(bo.simd) : active_simd();
  const PreserveLa& la = preserve_la_for(level);
  const bool use_openblas = resolve_blas(bo.blas) == BlasChoice::OpenBlas;

  if (has_basis) {
    const int64_t k = s.basis_rows, d = s.basis_cols;
    check_width(s, "basis", k, d, d, n, bo.has_bias, false);
    if (k > d) fail(ErrorCode::ShapeMismatch, s, "basis has shape " + shape_str(k, d) + ": more rows than columns cannot be orthonormal");
    if (k > 0 && !s.basis) fail(ErrorCode::InvalidArgument, s, "basis data is missing");
    check_finite(s, "basis", s.basis, k, d);
    P.dim = d;
    P.k = k;
    if (k == 0) { P.form = Preserve::Form::Identity; return out; }
    std::vector<double> G(size_t(k * k));
    la.gram_rows(s.basis, k, d, G.data());
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j) {
        const double want = i == j ? 1.0 : 0.0, got = G[size_t(j * k + i)];
        if (std::fabs(got - want) > 1e-4) {
          std::ostringstream os;
          os << "basis rows are not orthonormal: row " << i << " · row " << j << " = " << got << " (expected " << want
             << ", tolerance 1e-4)";
          fail(ErrorCode::BadStatistics, s, os.str());
        }
      }
    if (s.validate_only) { P.form = Preserve::Form::Identity; return out; }
    P.form = Preserve::Form::Basis;
    P.U.assign(s.basis, s.basis + k * d);
    return out;
  }

  if (!(s.rho > 0) || !std::isfinite(s.rho))
    throw Error(ErrorCode::InvalidArgument, "Expected a finite number > 0 for option 'rho' but received " +
                                                std::to_string(s.rho) + " (tensor '" + s.tensor + "')", details(s, "rho"));
  if (!(s.mu >= 0) || !std::isfinite(s.mu))
    throw Error(ErrorCode::InvalidArgument, "Expected a finite number >= 0 for option 'mu' but received " +
                                                std::to_string(s.mu) + " (tensor '" + s.tensor + "')", details(s, "mu"));
  int64_t d;
  if (has_cov) {
    d = s.cov_rows;
    check_width(s, "cov", s.cov_rows, s.cov_cols, d, n, bo.has_bias, true);
    if (!s.cov) fail(ErrorCode::InvalidArgument, s, "cov data is missing");
  } else {
    d = s.keys_cols;
    check_width(s, "keys", s.keys_rows, s.keys_cols, d, n, bo.has_bias, false);
    if (s.keys_rows < 1) fail(ErrorCode::ShapeMismatch, s, "keys has shape " + shape_str(s.keys_rows, s.keys_cols) + ": no rows");
    if (!s.keys) fail(ErrorCode::InvalidArgument, s, "keys data is missing");
  }
  if (has_ecov && (s.edit_cov_rows != d || s.edit_cov_cols != d))
    fail(ErrorCode::ShapeMismatch, s, "editCov has shape " + shape_str(s.edit_cov_rows, s.edit_cov_cols) + " but cov is " +
                                          shape_str(d, d));
  if (has_ekeys && (s.edit_keys_cols != d || s.edit_keys_rows < 1))
    fail(ErrorCode::ShapeMismatch, s, "edit keys have shape " + shape_str(s.edit_keys_rows, s.edit_keys_cols) +
                                          " but need [N, " + std::to_string(d) + "] with N >= 1");
  if (has_ecov && !s.edit_cov) fail(ErrorCode::InvalidArgument, s, "editCov data is missing");
  if (has_ekeys && !s.edit_keys) fail(ErrorCode::InvalidArgument, s, "edit keys data are missing");
  if (has_cov) check_finite(s, "cov", s.cov, d, d);
  else check_finite(s, "keys", s.keys, s.keys_rows, d);
  if (has_ecov) check_finite(s, "editCov", s.edit_cov, d, d);
  if (has_ekeys) check_finite(s, "edit keys", s.edit_keys, s.edit_keys_rows, d);
  P.dim = d;
  P.rho = s.rho;
  P.mu = s.mu;

  // Two f64 work matrices: W (C0, then A = C0 + mu'C1 + lambda·I, then its Cholesky factor) and
  // B (C1, then M = mu'C1 + lambda·I, then A^-1·M = P^T, which read column-major is P row-major).
  // The factorisations: cuSOLVER (f64 potrf/potrs on the GPU) when asked for and usable, else Eigen here.
  const bool gpu = bo.cuda && cuda_preserve_status().available;
  P.factored_on_gpu = gpu;
  P.openblas = use_openblas;
  const auto cholesky = [&](double* S) { return use_openblas ? openblas_cholesky(S, d, bo.threads) : la.cholesky(S, d); };
  const std::function<bool(double*)> factor = [&](double* S) {
    return gpu ? cuda_spd_solve(S, d, nullptr, 0) == 0 : cholesky(S);
  };
  const size_t dd = size_t(d) * size_t(d);
  std::vector<double> W(dd), B;
  double tr0 = 0, tr1 = 0;
  const bool with_c1 = has_ecov || has_ekeys;
  if (with_c1) B.resize(dd);
  if (has_ecov) {
    tr1 = load_symmetric(s, "editCov", s.edit_cov, d, B.data());
    check_psd(s, "editCov", factor, B.data(), d, tr1);
    load_symmetric(s, "editCov", s.edit_cov, d, B.data());
  } else if (has_ekeys) {
    la.gram(s.edit_keys, s.edit_keys_rows, d, B.data());
    for (int64_t i = 0; i < d; ++i) tr1 += B[size_t(i * d + i)];
  }
  if (has_cov) {
    tr0 = load_symmetric(s, "cov", s.cov, d, W.data());
    check_psd(s, "cov", factor, W.data(), d, tr0);
    load_symmetric(s, "cov", s.cov, d, W.data());
  } else {
    la.gram(s.keys, s.keys_rows, d, W.data());
    for (int64_t i = 0; i < d; ++i) tr0 += W[size_t(i * d + i)];
  }
  P.trace_c0 = tr0;
  P.trace_c1 = tr1;
  if (!(tr0 > 0) || s.validate_only) {  // C0 = 0: nothing to preserve (or a check only: no operator)
    P.form = Preserve::Form::Identity;
    return out;
  }
  P.lambda = s.rho * tr0 / double(d);
  P.mu_prime = with_c1 && tr1 > 0 ? s.mu * tr0 / tr1 : 0.0;
  const double lam = P.lambda, mup = P.mu_prime;
  if (!with_c1) B.assign(dd, 0.0);
  for (size_t i = 0; i < dd; ++i) {
    const double m = mup * B[i];
    W[i] += m;
    B[i] = m;
  }
  for (int64_t i = 0; i < d; ++i) {
    W[size_t(i * d + i)] += lam;
    B[size_t(i * d + i)] += lam;
  }
  const char* not_pd = "C0 + mu'·C1 + lambda·I is not positive definite in f64 (rho too small for these statistics?)";
  if (gpu) {
    if (cuda_spd_solve(W.data(), d, B.data(), d) != 0) fail(ErrorCode::BadStatistics, s, not_pd);
  } else {
    if (!cholesky(W.data())) fail(ErrorCode::BadStatistics, s, not_pd);
    // The d right-hand sides in fixed chunks of columns on the pool: same bytes for any thread count.
    const int64_t chunk = 256;
    const int64_t nchunks = (d + chunk - 1) / chunk;
    parallel_for(nchunks, 1, bo.threads, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t a = c * chunk, b = std::min(d, (c + 1) * chunk);
        if (use_openblas) openblas_solve_cols(W.data(), d, B.data(), a, b);
        else la.solve_cols(W.data(), d, B.data(), a, b);
      }
    });
  }
  P.form = Preserve::Form::Ridge;
  P.factored_by = gpu ? "cusolver" : use_openblas ? openblas_info().provider : std::string("eigen-") + la.name;
  P.P.resize(dd);
  for (size_t i = 0; i < dd; ++i) P.P[i] = float(B[i]);
  if (bo.keep_f64) P.P64 = std::move(B);
  return out;
}

void Preserve::apply_f64(const double* x, int64_t rows, double* y) const {
  const int64_t d = dim;
  if (form == Form::Identity) {
    std::memcpy(y, x, size_t(rows * d) * sizeof(double));
    return;
  }
  if (form == Form::Ridge) {
    if (P64.empty()) throw Error(ErrorCode::Internal, "apply_f64 needs an operator built with keep_f64");
    for (int64_t r = 0; r < rows; ++r) {
      const double* xr = x + r * d;
      double* yr = y + r * d;
      for (int64_t j = 0; j < d; ++j) yr[j] = 0;
      for (int64_t i = 0; i < d; ++i) {
        const double xi = xr[i];
        const double* pr = P64.data() + i * d;
        for (int64_t j = 0; j < d; ++j) yr[j] += xi * pr[j];
      }
    }
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = x + r * d;
    double* yr = y + r * d;
    for (int64_t j = 0; j < d; ++j) yr[j] = xr[j];
    for (int64_t q = 0; q < k; ++q) {
      const float* u = U.data() + q * d;
      double t = 0;
      for (int64_t j = 0; j < d; ++j) t += xr[j] * double(u[j]);
      for (int64_t j = 0; j < d; ++j) yr[j] -= t * double(u[j]);
    }
  }
}

std::string preserve_provider(const Preserve& p, SimdLevel level, const PreserveStats* st) {
  if (p.form == Preserve::Form::Identity) return "identity";
  const std::string cpu = p.form == Preserve::Form::Ridge && p.openblas ? openblas_info().provider
                                                                         : std::string("eigen-") + preserve_la_for(level).name;
  std::string s = cpu;
  if (st && st->gpu_rows > 0) s = st->gpu_rows >= st->rows ? "cublas" : "cublas+" + cpu;
  if (p.form == Preserve::Form::Ridge && !p.factored_by.empty() && p.factored_by != s) s += "; factored: " + p.factored_by;
  return s;
}

void preserve_rows_group(const Preserve& p, const float* X, int64_t rows, float* Y, SimdLevel level, int threads) {
  const int64_t d = p.dim;
  const PreserveLa& la = preserve_la_for(level);
  switch (p.form) {
    case Preserve::Form::Identity: std::memcpy(Y, X, size_t(rows * d) * 4); return;
    case Preserve::Form::Ridge: {
      // k tiles: ceil(rows / kPreserveTileRows) rounded up to an even number (two threads stay balanced),
      // each a whole number of blocks.
      const int64_t RB = kPreserveBlockRows, units = (rows + RB - 1) / RB;
      int64_t k = (rows + kPreserveTileRows - 1) / kPreserveTileRows;
      k = std::min(units, k + (k & 1));
      const int64_t per = ((units + k - 1) / k) * RB, ntiles = (rows + per - 1) / per;
      parallel_for(ntiles, 1, threads, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t r0 = t * per, nr = std::min(per, rows - r0);
          if (p.openblas) openblas_sgemm(X + r0 * d, nr, d, d, p.P.data(), d, d, Y + r0 * d, d);
          else la.gemm(X + r0 * d, nr, d, d, p.P.data(), d, d, Y + r0 * d, d);
        }
      });
      return;
    }
    case Preserve::Form::Basis: {
      const int64_t R = kPreserveBlockRows, nb = rows / R;
      parallel_for(nb, 1, threads, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) la.basis(X + b * R * d, R, d, p.U.data(), p.k, Y + b * R * d);
      });
      return;
    }
  }
}

void preserve_rows_block(const Preserve& p, const float* X, int64_t rows, float* Y, SimdLevel level) {
  preserve_rows_group(p, X, rows, Y, level, 1);
}

void Preserve::apply_sides(const float* a, const float* b, int64_t rows, float* ya, float* yb, int threads, int simd) const {
  // As run_edit: groups of kPreserveGroupRows rows per side from the first row, the last padded to a
  // multiple of kPreserveBlockRows; one GEMM per group over [old rows; new rows].
  const int64_t d = dim, G = kPreserveGroupRows, RB = kPreserveBlockRows;
  const SimdLevel level = simd >= 0 ? SimdLevel(simd) : active_simd();
  const int64_t first = std::min(G, ((rows + RB - 1) / RB) * RB);
  std::vector<float> X(size_t(2 * first * d)), Y(X.size());
  for (int64_t r0 = 0; r0 < rows; r0 += G) {
    const int64_t nr = std::min(G, rows - r0), R = ((nr + RB - 1) / RB) * RB;
    if (a) std::memcpy(X.data(), a + r0 * d, size_t(nr * d) * 4);
    else std::fill(X.begin(), X.begin() + nr * d, 0.0f);
    std::fill(X.begin() + nr * d, X.begin() + R * d, 0.0f);
    std::memcpy(X.data() + R * d, b + r0 * d, size_t(nr * d) * 4);
    std::fill(X.begin() + (R + nr) * d, X.begin() + 2 * R * d, 0.0f);
    preserve_rows_group(*this, X.data(), 2 * R, Y.data(), level, threads);
    if (ya) std::memcpy(ya + r0 * d, Y.data(), size_t(nr * d) * 4);
    std::memcpy(yb + r0 * d, Y.data() + R * d, size_t(nr * d) * 4);
  }
}

void Preserve::apply(const float* x, int64_t rows, float* y, int threads, int simd) const {
  apply_sides(nullptr, x, rows, nullptr, y, threads, simd);
}

}  // namespace geoedit
