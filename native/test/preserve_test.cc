// Plain C++ tests of SPEC §3 step 0 (core/preserve.h), no Node headers. The reference here is its
// own: an f64 Gauss-Jordan inverse written in this file (not the core's Eigen path), held to the
// SPEC §5 preservation tolerance (each element within 1e-5·||x||_2 of the f64 x·P) on every SIMD
// level; plus the ridge minimiser property, the basis and augmented forms, thread-count and
// blocking invariance, the energy statistics and every validation error.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "core/preserve.h"
#include "core/stream.h"
#include "geoedit/geoedit.h"

using namespace geoedit;

#include "check.h"

using VD = std::vector<double>;
using VF = std::vector<float>;

static VF randn(std::mt19937& g, size_t n, float s = 1.0f) {
  std::normal_distribution<float> nd(0.f, s);
  VF v(n);
  for (auto& x : v) x = nd(g);
  return v;
}

// C = K^T K / N in f64 from f32 keys [N, d] (with a strong mean direction, as real activations have).
static VD gram64(const VF& K, int64_t N, int64_t d) {
  VD C(size_t(d * d), 0.0);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) C[size_t(i * d + j)] += double(K[size_t(r * d + i)]) * K[size_t(r * d + j)];
  for (auto& x : C) x /= double(N);
  return C;
}
static VF keys(std::mt19937& g, int64_t N, int64_t d, float mean) {
  VF K = randn(g, size_t(N * d));
  VF mu = randn(g, size_t(d), mean);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t j = 0; j < d; ++j) K[size_t(r * d + j)] += mu[size_t(j)];
  return K;
}
static VF to_f32(const VD& x) { return VF(x.begin(), x.end()); }

// Inverse by Gauss-Jordan with partial pivoting, f64 (the test's own reference).
static VD inverse(VD A, int64_t d) {
  VD I(size_t(d * d), 0.0);
  for (int64_t i = 0; i < d; ++i) I[size_t(i * d + i)] = 1;
  for (int64_t c = 0; c < d; ++c) {
    int64_t p = c;
    for (int64_t r = c + 1; r < d; ++r)
      if (std::fabs(A[size_t(r * d + c)]) > std::fabs(A[size_t(p * d + c)])) p = r;
    for (int64_t j = 0; j < d; ++j) { std::swap(A[size_t(c * d + j)], A[size_t(p * d + j)]); std::swap(I[size_t(c * d + j)], I[size_t(p * d + j)]); }
    const double inv = 1.0 / A[size_t(c * d + c)];
    for (int64_t j = 0; j < d; ++j) { A[size_t(c * d + j)] *= inv; I[size_t(c * d + j)] *= inv; }
    for (int64_t r = 0; r < d; ++r)
      if (r != c) {
        const double f = A[size_t(r * d + c)];
        if (f == 0) continue;
        for (int64_t j = 0; j < d; ++j) { A[size_t(r * d + j)] -= f * A[size_t(c * d + j)]; I[size_t(r * d + j)] -= f * I[size_t(c * d + j)]; }
      }
  }
  return I;
}
static VD matmul(const VD& A, const VD& B, int64_t m, int64_t k, int64_t n) {
  VD C(size_t(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t q = 0; q < k; ++q)
      for (int64_t j = 0; j < n; ++j) C[size_t(i * n + j)] += A[size_t(i * k + q)] * B[size_t(q * n + j)];
  return C;
}
// The SPEC's P from f64 C0, C1 (C1 may be empty).
static VD ref_P(const VD& C0, const VD& C1, int64_t d, double rho, double mu) {
  double t0 = 0, t1 = 0;
  for (int64_t i = 0; i < d; ++i) { t0 += C0[size_t(i * d + i)]; if (!C1.empty()) t1 += C1[size_t(i * d + i)]; }
  const double lam = rho * t0 / double(d), mup = C1.empty() ? 0.0 : mu * t0 / t1;
  VD M(size_t(d * d), 0.0), A(C0);
  for (size_t i = 0; i < M.size(); ++i) { M[i] = C1.empty() ? 0.0 : mup * C1[i]; A[i] += M[i]; }
  for (int64_t i = 0; i < d; ++i) { M[size_t(i * d + i)] += lam; A[size_t(i * d + i)] += lam; }
  return matmul(M, inverse(A, d), d, d, d);
}

// One edit through run_edit with preservation: task arithmetic at scale 1 on a zero base gives the
// preserved new rows themselves (0 + 1·b·P, exact in f32); the old rows via the old side swapped in.
struct Edited { VF out; std::vector<double> cos; PreserveStats st; };
static Edited edit(const Preserve* P, int64_t m, int64_t n, const VF& base, const VF& old_, const VF& new_, int threads,
                   int simd, DType out_dtype = DType::F32, const PreserveBias* bias = nullptr,
                   Strategy strat = Strategy::TaskArithmetic, int64_t block = 0) {
  Edited e;
  e.out.resize(size_t(m * n));
  e.cos.resize(size_t(m));
  Params p;
  p.strategy = strat;
  const int64_t step = block > 0 ? block : m;
  for (int64_t r0 = 0; r0 < m; r0 += step) {
    const int64_t r = std::min(step, m - r0);
    EditJob j;
    j.rows = r;
    j.cols = n;
    j.base = {DType::F32, base.data() + r0 * n};
    j.old_ = {DType::F32, old_.data() + r0 * n};
    j.new_ = {DType::F32, new_.data() + r0 * n};
    j.out_dtype = out_dtype;
    j.out = reinterpret_cast<char*>(e.out.data()) + size_t(r0 * n) * dtype_size(out_dtype);
    j.stats.cos = e.cos.data() + r0;
    j.tensor_name = "w";
    j.row_offset = r0;
    j.preserve = P;
    PreserveBias b;
    if (bias) {
      b = *bias;
      b.base.data = static_cast<const float*>(bias->base.data) + r0;
      b.old_.data = static_cast<const float*>(bias->old_.data) + r0;
      b.new_.data = static_cast<const float*>(bias->new_.data) + r0;
      if (b.tau_old_out) b.tau_old_out += r0;
      if (b.tau_new_out) b.tau_new_out += r0;
      j.preserve_bias = &b;
    }
    j.preserve_stats = &e.st;
    RunOptions ro;
    ro.threads = threads;
    ro.simd = simd;
    run_edit(j, p, ro);
  }
  return e;
}

static double max_rel_err(const VF& got, const VD& x, const VD& P, int64_t m, int64_t d, int64_t n, int64_t ldg) {
  // max over rows/elements of |got - x·P| / ||x||_2 (the first n columns of each d-wide row)
  const VD y = matmul(x, P, m, d, d);
  double worst = 0;
  for (int64_t i = 0; i < m; ++i) {
    double nx = 0;
    for (int64_t j = 0; j < d; ++j) nx += x[size_t(i * d + j)] * x[size_t(i * d + j)];
    nx = std::sqrt(nx);
    for (int64_t j = 0; j < n; ++j) {
      const double e = std::fabs(double(got[size_t(i * ldg + j)]) - y[size_t(i * d + j)]) / (nx > 0 ? nx : 1);
      if (e > worst) worst = e;
    }
  }
  return worst;
}

static bool throws(ErrorCode code, const std::vector<std::string>& needles, const std::function<void()>& f, std::string* msg = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (msg) *msg = e.what();
    if (e.code() != code) { std::printf("  wrong code %s: %s\n", error_code_name(e.code()), e.what()); return false; }
    for (const auto& s : needles)
      if (std::string(e.what()).find(s) == std::string::npos) { std::printf("  message lacks '%s': %s\n", s.c_str(), e.what()); return false; }
    return true;
  }
  return false;
}

// Every section below runs once per CPU provider (core/blas.h): Eigen, then the system's OpenBLAS when
// it loads (a skip line says why not).
static bool g_openblas = false;  // the suite's provider
static void run_suite() {
  std::mt19937 g(12);
  const int64_t n = 37, m = 450;  // not multiples of anything; 450 rows = 2 full blocks + a partial one
  const VF K0 = keys(g, 300, n, 2.0f), K1 = keys(g, 40, n, 0.5f);
  const VD C0 = gram64(K0, 300, n), C1 = gram64(K1, 40, n);
  const VF C0f = to_f32(C0), C1f = to_f32(C1);
  const double rho = 0.3, mu = 10;
  VF base = randn(g, size_t(m * n)), old_ = base, new_ = base;
  {
    const VF ta = randn(g, size_t(m * n), 0.1f), tb = randn(g, size_t(m * n), 0.1f);
    for (size_t i = 0; i < old_.size(); ++i) { old_[i] += ta[i]; new_[i] += tb[i]; }
  }
  VD ta64(static_cast<size_t>(m * n)), tb64(static_cast<size_t>(m * n));
  for (size_t i = 0; i < ta64.size(); ++i) { ta64[i] = double(old_[i] - base[i]); tb64[i] = double(new_[i] - base[i]); }
  const VF zero(size_t(m * n), 0.0f);
  VF tb32(tb64.begin(), tb64.end());

  // 1. Ridge with C1 against the test's own f64 P, every SIMD level, and the core's kept f64 P.
  PreserveSpec sp;
  sp.cov = C0f.data(); sp.cov_rows = sp.cov_cols = n;
  sp.edit_cov = C1f.data(); sp.edit_cov_rows = sp.edit_cov_cols = n;
  sp.rho = rho; sp.mu = mu; sp.tensor = "w";
  PreserveBuildOptions bo;
  bo.cols = n;
  bo.keep_f64 = true;
  const auto Pr = build_preserve(sp, bo);
  const VD C0r(C0f.begin(), C0f.end()), C1r(C1f.begin(), C1f.end());
  const VD Pref = ref_P(C0r, C1r, n, rho, mu);
  {
    double worst = 0, pmax = 0;
    for (size_t i = 0; i < Pref.size(); ++i) { worst = std::max(worst, std::fabs(Pr->P64[i] - Pref[i])); pmax = std::max(pmax, std::fabs(Pref[i])); }
    CHECK(Pr->form == Preserve::Form::Ridge && worst <= 1e-9 * std::max(1.0, pmax), "core f64 P vs Gauss-Jordan: %g", worst);
  }
  for (int lv = 0; lv <= 2; ++lv) {
    if (!cpu_supports(SimdLevel(lv))) continue;
    const Edited eb = edit(Pr.get(), m, n, zero, zero, tb32, 2, lv);
    const double e = max_rel_err(eb.out, tb64, Pref, m, n, n, n);
    CHECK(e <= 1e-5, "%s: ridge b·P within 1e-5·||b|| (got %g)", simd_name(SimdLevel(lv)), e);
    CHECK(e > 0 || lv == 0, "%s: f32 path differs from f64 at all (sanity: %g)", simd_name(SimdLevel(lv)), e);
    // From weights: old/new minus base, the old side through an F-Learning edit (c_old = -1): out = b' - a'.
    const Edited ea = edit(Pr.get(), m, n, base, old_, base, 2, lv);  // new = base: b = 0, out = base
    (void)ea;
    // The energy statistic: before = sum ||b||^2, after = sum ||b·P||^2.
    double before = 0, after = 0;
    for (size_t i = 0; i < tb64.size(); ++i) { before += double(tb32[i]) * tb32[i]; after += double(eb.out[i]) * eb.out[i]; }
    CHECK(std::fabs(eb.st.new_before - before) <= 1e-9 * before && std::fabs(eb.st.new_after - after) <= 1e-9 * after &&
              eb.st.rows == m && eb.st.new_after < eb.st.new_before,
          "%s: energy stats %g/%g vs %g/%g", simd_name(SimdLevel(lv)), eb.st.new_before, eb.st.new_after, before, after);
  }

  // 2. The ridge minimiser: from keys (C formed in the core), grad of
  //    |b'K0^T|^2/N0 + mu'|(b'-b)K1^T|^2/N1 + lambda|b'-b|^2 at b' = b·P is ~0:
  //    b'C0 + mu'(b'-b)C1 + lambda(b'-b) = 0.
  {
    PreserveSpec sk;
    sk.keys = K0.data(); sk.keys_rows = 300; sk.keys_cols = n;
    sk.edit_keys = K1.data(); sk.edit_keys_rows = 40; sk.edit_keys_cols = n;
    sk.rho = rho; sk.mu = mu; sk.tensor = "w";
    const auto Pk = build_preserve(sk, bo);
    const VD Pk_ref = ref_P(C0, C1, n, rho, mu);
    double worst = 0;
    for (size_t i = 0; i < Pk_ref.size(); ++i) worst = std::max(worst, std::fabs(Pk->P64[i] - Pk_ref[i]));
    CHECK(worst <= 1e-9, "keys: C formed in the core gives the same P (%g)", worst);
    const double lam = Pk->lambda, mup = Pk->mu_prime;
    double t0 = 0, t1 = 0;
    for (int64_t i = 0; i < n; ++i) { t0 += C0[size_t(i * n + i)]; t1 += C1[size_t(i * n + i)]; }
    CHECK(std::fabs(lam - rho * t0 / n) <= 1e-9 * lam && std::fabs(mup - mu * t0 / t1) <= 1e-9 * mup, "lambda %g mu' %g", lam, mup);
    for (int which = 0; which < 2; ++which) {
      // which 0: f64 operator; 1: the fast path's f32 rows
      const int64_t rows = 20;
      VD bp(size_t(rows * n));
      if (which == 0) {
        Pk->apply_f64(tb64.data(), rows, bp.data());
      } else {
        const Edited eb = edit(Pk.get(), rows, n, VF(size_t(rows * n), 0.f), VF(size_t(rows * n), 0.f),
                               VF(tb32.begin(), tb32.begin() + rows * n), 1, -1);
        for (size_t i = 0; i < bp.size(); ++i) bp[i] = eb.out[i];
      }
      double gworst = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const double* b = tb64.data() + r * n;
        const double* y = bp.data() + r * n;
        double nb = 0;
        for (int64_t j = 0; j < n; ++j) nb += b[j] * b[j];
        for (int64_t j = 0; j < n; ++j) {
          double gr = lam * (y[j] - b[j]);
          for (int64_t q = 0; q < n; ++q) gr += y[q] * C0[size_t(q * n + j)] + mup * (y[q] - b[q]) * C1[size_t(q * n + j)];
          // scale: the gradient's terms are of size (lambda + ||C0|| + mu'||C1||)·||b||
          gworst = std::max(gworst, std::fabs(gr) / ((lam * n / rho) * (1 + mu) * std::sqrt(nb)));
        }
      }
      CHECK(gworst <= (which == 0 ? 1e-12 : 1e-5), "minimiser gradient ~0 (%s): %g", which == 0 ? "f64" : "f32 rows", gworst);
    }
  }

  // 3. Basis form: U with orthonormal rows (Gram-Schmidt in f64).
  {
    const int64_t k = 6;
    VD U64(static_cast<size_t>(k * n));
    VF r = randn(g, size_t(k * n));
    for (int64_t q = 0; q < k; ++q) {
      for (int64_t j = 0; j < n; ++j) U64[size_t(q * n + j)] = r[size_t(q * n + j)];
      for (int pass = 0; pass < 2; ++pass)
        for (int64_t p = 0; p < q; ++p) {
          double t = 0;
          for (int64_t j = 0; j < n; ++j) t += U64[size_t(q * n + j)] * U64[size_t(p * n + j)];
          for (int64_t j = 0; j < n; ++j) U64[size_t(q * n + j)] -= t * U64[size_t(p * n + j)];
        }
      double nn = 0;
      for (int64_t j = 0; j < n; ++j) nn += U64[size_t(q * n + j)] * U64[size_t(q * n + j)];
      for (int64_t j = 0; j < n; ++j) U64[size_t(q * n + j)] /= std::sqrt(nn);
    }
    const VF U = to_f32(U64);
    PreserveSpec sb;
    sb.basis = U.data(); sb.basis_rows = k; sb.basis_cols = n; sb.tensor = "w";
    const auto Pb = build_preserve(sb, bo);
    // the reference operator I - U^T U from the f32 U (in f64)
    VD Pu(size_t(n * n), 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double v = i == j ? 1.0 : 0.0;
        for (int64_t q = 0; q < k; ++q) v -= double(U[size_t(q * n + i)]) * U[size_t(q * n + j)];
        Pu[size_t(i * n + j)] = v;
      }
    for (int lv = 0; lv <= 2; ++lv) {
      if (!cpu_supports(SimdLevel(lv))) continue;
      const Edited eb = edit(Pb.get(), m, n, zero, zero, tb32, 2, lv);
      CHECK(max_rel_err(eb.out, tb64, Pu, m, n, n, n) <= 1e-5, "%s: basis x - (x·U^T)·U", simd_name(SimdLevel(lv)));
      double orth = 0;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t q = 0; q < k; ++q) {
          double t = 0, nx = 0;
          for (int64_t j = 0; j < n; ++j) { t += double(eb.out[size_t(i * n + j)]) * U[size_t(q * n + j)]; nx += tb64[size_t(i * n + j)] * tb64[size_t(i * n + j)]; }
          orth = std::max(orth, std::fabs(t) / std::sqrt(nx));
        }
      CHECK(orth <= 1e-5, "%s: preserved rows orthogonal to U (%g)", simd_name(SimdLevel(lv)), orth);
    }
    VD yb(static_cast<size_t>(4 * n));
    Pb->apply_f64(tb64.data(), 4, yb.data());
    const VD yr = matmul(VD(tb64.begin(), tb64.begin() + 4 * n), Pu, 4, n, n);
    double w = 0;
    for (size_t i = 0; i < yb.size(); ++i) w = std::max(w, std::fabs(yb[i] - yr[i]));
    CHECK(w <= 1e-12, "basis apply_f64 (%g)", w);
  }

  // 4. Augmented [x; 1]: (n+1)×(n+1) statistics; weight row i and bias element i together.
  {
    const int64_t d = n + 1;
    VF Ka = K0;  // keys with a 1 appended
    VF Kaug(size_t(300 * d));
    for (int64_t r = 0; r < 300; ++r) {
      for (int64_t j = 0; j < n; ++j) Kaug[size_t(r * d + j)] = Ka[size_t(r * n + j)];
      Kaug[size_t(r * d + n)] = 1.0f;
    }
    const VF Caf = to_f32(gram64(Kaug, 300, d));
    const VD Car(Caf.begin(), Caf.end());
    PreserveSpec sa;
    sa.cov = Caf.data(); sa.cov_rows = sa.cov_cols = d; sa.rho = rho; sa.tensor = "w";
    PreserveBuildOptions ba = bo;
    ba.has_bias = true;
    const auto Pa = build_preserve(sa, ba);
    CHECK(Pa->augmented() && Pa->dim == d, "augmented operator");
    const VD Paref = ref_P(Car, {}, d, rho, 0);
    VF bb = randn(g, size_t(m)), bo_ = bb, bn = bb;
    {
      const VF x = randn(g, size_t(m), 0.1f), y = randn(g, size_t(m), 0.1f);
      for (int64_t i = 0; i < m; ++i) { bo_[size_t(i)] += x[size_t(i)]; bn[size_t(i)] += y[size_t(i)]; }
    }
    VD xa(static_cast<size_t>(m * d)), xb(static_cast<size_t>(m * d));
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) { xa[size_t(i * d + j)] = ta64[size_t(i * n + j)]; xb[size_t(i * d + j)] = tb64[size_t(i * n + j)]; }
      xa[size_t(i * d + n)] = double(bo_[size_t(i)] - bb[size_t(i)]);
      xb[size_t(i * d + n)] = double(bn[size_t(i)] - bb[size_t(i)]);
    }
    for (int lv = 0; lv <= 2; ++lv) {
      if (!cpu_supports(SimdLevel(lv))) continue;
      VF tau_o(static_cast<size_t>(m)), tau_n(static_cast<size_t>(m));
      PreserveBias pb;
      pb.base = {DType::F32, bb.data()};
      pb.old_ = {DType::F32, bo_.data()};
      pb.new_ = {DType::F32, bn.data()};
      pb.tau_old_out = tau_o.data();
      pb.tau_new_out = tau_n.data();
      // task arithmetic, scale 1: out - base = preserved b rows (f32 subtraction of base: compare with zero base instead)
      const Edited e = edit(Pa.get(), m, n, zero, old_, new_, 2, lv, DType::F32, &pb);
      (void)e;
      // zero base, so tau = old/new themselves; redo with taus equal to xa/xb's weight parts
      VF wa(static_cast<size_t>(m * n)), wb(static_cast<size_t>(m * n));
      for (size_t i = 0; i < wa.size(); ++i) { wa[i] = float(ta64[i]); wb[i] = float(tb64[i]); }
      const Edited e2 = edit(Pa.get(), m, n, zero, wa, wb, 2, lv, DType::F32, &pb);
      VF outa(static_cast<size_t>(m * d));
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) outa[size_t(i * d + j)] = e2.out[size_t(i * n + j)];
        outa[size_t(i * d + n)] = tau_n[size_t(i)];
      }
      CHECK(max_rel_err(outa, xb, Paref, m, d, d, d) <= 1e-5, "%s: augmented [b, b_bias]·P (weight and bias)", simd_name(SimdLevel(lv)));
      VF outo(static_cast<size_t>(m * d));
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) outo[size_t(i * d + j)] = 0;
        outo[size_t(i * d + n)] = tau_o[size_t(i)];
      }
      // the old bias element alone: compare the last column only
      const VD ya = matmul(xa, Paref, m, d, d);
      double worst = 0;
      for (int64_t i = 0; i < m; ++i) {
        double nx = 0;
        for (int64_t j = 0; j < d; ++j) nx += xa[size_t(i * d + j)] * xa[size_t(i * d + j)];
        worst = std::max(worst, std::fabs(double(tau_o[size_t(i)]) - ya[size_t(i * d + n)]) / std::sqrt(nx));
      }
      CHECK(worst <= 1e-5, "%s: preserved old bias element (%g)", simd_name(SimdLevel(lv)), worst);
      CHECK(e2.st.bias_new_before > 0 && e2.st.bias_new_after > 0, "bias energy stats");
    }
    // Without the bias the augmented operator is refused.
    CHECK(throws(ErrorCode::ShapeMismatch, {"'w'", "no bias"}, [&] { edit(Pa.get(), m, n, zero, zero, tb32, 1, -1); }), "augmented without bias");
  }

  // 5. Same bytes for any thread count, run to run, any caller blocking (multiples of the block
  //    size), and Preserve::apply; f32 and bf16 outputs; geoedit strategy (regions on preserved rows).
  for (int lv = 0; lv <= 2; ++lv) {
    if (!cpu_supports(SimdLevel(lv))) continue;
    for (DType od : {DType::F32, DType::BF16}) {
      const Edited r1 = edit(Pr.get(), m, n, base, old_, new_, 1, lv, od, nullptr, Strategy::GeoEdit);
      const size_t bytes = size_t(m * n) * dtype_size(od);
      for (int th : {2, 3, 8}) {
        const Edited rt = edit(Pr.get(), m, n, base, old_, new_, th, lv, od, nullptr, Strategy::GeoEdit);
        CHECK(std::memcmp(r1.out.data(), rt.out.data(), bytes) == 0 && r1.cos == rt.cos, "%s %s: threads %d same bytes",
              simd_name(SimdLevel(lv)), dtype_name(od), th);
        CHECK(std::memcmp(&r1.st, &rt.st, sizeof(PreserveStats)) == 0, "threads %d: same energy sums", th);
      }
      // Eigen gives a row the same bytes whatever the GEMM's row count, so any caller blocking in
      // multiples of kPreserveBlockRows does; OpenBLAS switches to its small-matrix kernels below a
      // size, so there only multiples of kPreserveGroupRows do (cross_provider checks that).
      if (!g_openblas) {
        const Edited rb = edit(Pr.get(), m, n, base, old_, new_, 2, lv, od, nullptr, Strategy::GeoEdit, 2 * kPreserveBlockRows);
        CHECK(std::memcmp(r1.out.data(), rb.out.data(), bytes) == 0, "%s %s: caller blocks of 2R rows give the same bytes",
              simd_name(SimdLevel(lv)), dtype_name(od));
      }
    }
    const Edited eb = edit(Pr.get(), m, n, zero, zero, tb32, 2, lv);
    VF ya(static_cast<size_t>(m * n));
    Pr->apply(tb32.data(), m, ya.data(), 3, lv);
    CHECK(std::memcmp(ya.data(), eb.out.data(), ya.size() * 4) == 0, "%s: Preserve::apply = run_edit's preserved rows", simd_name(SimdLevel(lv)));
  }

  // 6. Validation: each a coded error naming the tensor, before any work.
  {
    auto spec_cov = [&](const float* c, int64_t d) {
      PreserveSpec s;
      s.cov = c; s.cov_rows = s.cov_cols = d; s.tensor = "layers.0.mlp.up.weight"; s.source = "stats.safetensors";
      return s;
    };
    const std::string T = "'layers.0.mlp.up.weight'";
    PreserveBuildOptions b;
    b.cols = n;
    CHECK(throws(ErrorCode::ShapeMismatch, {T, "[36, 36]", "37 columns", "[37, 37]"}, [&] { build_preserve(spec_cov(C0f.data(), n - 1), b); }), "wrong shape names both");
    CHECK(throws(ErrorCode::ShapeMismatch, {T, "[38, 38]", "bias"}, [&] { build_preserve(spec_cov(C0f.data(), n + 1), b); }), "n+1 without bias");
    {
      PreserveSpec s = spec_cov(C0f.data(), n);
      s.cov_cols = n + 3;
      CHECK(throws(ErrorCode::ShapeMismatch, {T, "[37, 40]"}, [&] { build_preserve(s, b); }), "not square");
      PreserveSpec e = spec_cov(C0f.data(), n);
      e.edit_cov = C1f.data(); e.edit_cov_rows = e.edit_cov_cols = n - 2;
      CHECK(throws(ErrorCode::ShapeMismatch, {T, "editCov", "[35, 35]", "[37, 37]"}, [&] { build_preserve(e, b); }), "editCov shape");
    }
    {
      VF c = C0f;
      c[size_t(3 * n + 5)] += 0.5f * std::fabs(c[size_t(3 * n + 3)]) + 1.0f;
      CHECK(throws(ErrorCode::BadStatistics, {T, "not symmetric", "[3, 5]"}, [&] { build_preserve(spec_cov(c.data(), n), b); }), "asymmetric");
      VF c2 = C0f;
      c2[size_t(3 * n + 5)] *= 1.0f + 1e-6f;  // f32 rounding-level asymmetry is accepted
      CHECK(!throws(ErrorCode::BadStatistics, {}, [&] { build_preserve(spec_cov(c2.data(), n), b); }), "tiny asymmetry accepted");
    }
    {
      // C0 - 0.05·tr/n · v v^T with v a unit vector in the span of little energy: a clearly negative eigenvalue
      VD c(C0r);
      double tr = 0;
      for (int64_t i = 0; i < n; ++i) tr += c[size_t(i * n + i)];
      // subtract (min eigen-ish) along e_0 + e_1 beyond what C0 has there
      VF v = randn(g, size_t(n));
      double nv = 0;
      for (float x : v) nv += double(x) * x;
      double quad = 0;  // v^T C v
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) quad += v[size_t(i)] * c[size_t(i * n + j)] * v[size_t(j)];
      const double s = (quad / nv + 0.05 * tr / n) / nv;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) c[size_t(i * n + j)] -= s * v[size_t(i)] * v[size_t(j)];
      const VF cf = to_f32(c);
      CHECK(throws(ErrorCode::BadStatistics, {T, "not positive semi-definite"}, [&] { build_preserve(spec_cov(cf.data(), n), b); }), "not PSD");
      // Low rank (keys fewer than n, rounding-level negative eigenvalues) is accepted.
      const VF Kl = keys(g, 5, n, 1.0f);
      const VF Cl = to_f32(gram64(Kl, 5, n));
      CHECK(!throws(ErrorCode::BadStatistics, {}, [&] { build_preserve(spec_cov(Cl.data(), n), b); }), "rank-5 PSD accepted");
      PreserveSpec se = spec_cov(C0f.data(), n);
      se.edit_cov = cf.data(); se.edit_cov_rows = se.edit_cov_cols = n;
      CHECK(throws(ErrorCode::BadStatistics, {T, "editCov", "not positive semi-definite"}, [&] { build_preserve(se, b); }), "editCov not PSD");
    }
    {
      VF c = C0f;
      c[size_t(7 * n + 2)] = NAN;
      CHECK(throws(ErrorCode::NonFinite, {T, "cov", "[7, 2]"}, [&] { build_preserve(spec_cov(c.data(), n), b); }), "non-finite cov");
      VF k = K0;
      k[10] = INFINITY;
      PreserveSpec s;
      s.keys = k.data(); s.keys_rows = 300; s.keys_cols = n; s.tensor = "layers.0.mlp.up.weight";
      CHECK(throws(ErrorCode::NonFinite, {T, "keys", "[0, 10]"}, [&] { build_preserve(s, b); }), "non-finite keys");
    }
    {
      VF U(size_t(2 * n), 0.0f);
      U[0] = 1.0f;
      U[size_t(n)] = 0.6f;
      U[size_t(n + 1)] = 0.8f;  // unit rows but not orthogonal (row0·row1 = 0.6)
      PreserveSpec s;
      s.basis = U.data(); s.basis_rows = 2; s.basis_cols = n; s.tensor = "layers.0.mlp.up.weight";
      CHECK(throws(ErrorCode::BadStatistics, {T, "orthonormal", "row 1"}, [&] { build_preserve(s, b); }), "basis not orthonormal");
      U[size_t(n)] = 0.0f;
      U[size_t(n + 1)] = 2.0f;
      CHECK(throws(ErrorCode::BadStatistics, {T, "orthonormal"}, [&] { build_preserve(s, b); }), "basis rows not unit");
      s.basis_cols = n + 4;
      CHECK(throws(ErrorCode::ShapeMismatch, {T, "basis", "[2, 41]"}, [&] { build_preserve(s, b); }), "basis shape");
    }
    for (double r : {0.0, -1.0, double(NAN)}) {
      PreserveSpec s = spec_cov(C0f.data(), n);
      s.rho = r;
      CHECK(throws(ErrorCode::InvalidArgument, {"'rho'", T}, [&] { build_preserve(s, b); }), "rho %g", r);
    }
    {
      PreserveSpec s = spec_cov(C0f.data(), n);
      s.mu = -0.5;
      CHECK(throws(ErrorCode::InvalidArgument, {"'mu'", T}, [&] { build_preserve(s, b); }), "mu < 0");
      s.mu = 0;
      CHECK(!throws(ErrorCode::InvalidArgument, {}, [&] { build_preserve(s, b); }), "mu = 0 accepted");
    }
    {
      PreserveSpec s;
      s.tensor = "layers.0.mlp.up.weight";
      CHECK(throws(ErrorCode::BadStatistics, {T, "none of"}, [&] { build_preserve(s, b); }), "no statistics");
      VF U(size_t(n), 0.0f);
      U[0] = 1;
      s = spec_cov(C0f.data(), n);
      s.basis = U.data(); s.basis_rows = 1; s.basis_cols = n;
      CHECK(throws(ErrorCode::BadStatistics, {T, "exactly one"}, [&] { build_preserve(s, b); }), "two forms");
    }
    // A non-finite task vector row is named (row number with the caller's offset) before any output.
    {
      VF nw = new_;
      nw[size_t(300 * n + 4)] = NAN;
      std::string msg;
      CHECK(throws(ErrorCode::NonFinite, {"'w'", "row 300", "column 4"}, [&] { edit(Pr.get(), m, n, base, old_, nw, 2, -1); }, &msg), "non-finite row named");
    }
    // An operator of another width is refused.
    CHECK(throws(ErrorCode::ShapeMismatch, {"'w'", "37 columns", "36 columns"}, [&] {
            edit(Pr.get(), 10, n - 1, VF(size_t(10 * (n - 1))), VF(size_t(10 * (n - 1))), VF(size_t(10 * (n - 1))), 1, -1);
          }), "operator width");
  }
  // Identity: C0 = 0 leaves the rows as they are.
  {
    const VF Z(size_t(n * n), 0.0f);
    PreserveSpec s;
    s.cov = Z.data(); s.cov_rows = s.cov_cols = n; s.tensor = "w";
    const auto Pz = build_preserve(s, bo);
    const Edited e = edit(Pz.get(), m, n, zero, zero, tb32, 2, -1);
    CHECK(Pz->form == Preserve::Form::Identity && std::memcmp(e.out.data(), tb32.data(), tb32.size() * 4) == 0, "C0 = 0: identity");
  }

  // 7. A wider tensor (Eigen's depth blocking splits k = 520; 3 row blocks + a partial one):
  //    tolerance and thread/blocking invariance where the GEMM really is blocked.
  {
    const int64_t n2 = 520, m2 = 700;
    const VF K2 = keys(g, 800, n2, 3.0f);
    const VF C2f = to_f32(gram64(K2, 800, n2));
    PreserveSpec s2;
    s2.cov = C2f.data(); s2.cov_rows = s2.cov_cols = n2; s2.rho = 0.1; s2.tensor = "wide";
    PreserveBuildOptions b2;
    b2.cols = n2;
    const auto P2 = build_preserve(s2, b2);
    const VD P2ref = ref_P(VD(C2f.begin(), C2f.end()), {}, n2, 0.1, 0);
    const VF t2 = randn(g, size_t(m2 * n2), 0.05f), z2(size_t(m2 * n2), 0.0f);
    const VD t2d(t2.begin(), t2.end());
    for (int lv = 0; lv <= 2; ++lv) {
      if (!cpu_supports(SimdLevel(lv))) continue;
      const Edited e1 = edit(P2.get(), m2, n2, z2, z2, t2, 1, lv);
      const double err = max_rel_err(e1.out, t2d, P2ref, m2, n2, n2, n2);
      CHECK(err <= 1e-5, "%s: n=520 ridge within 1e-5·||x|| (%g)", simd_name(SimdLevel(lv)), err);
      const Edited e3 = edit(P2.get(), m2, n2, z2, z2, t2, 3, lv, DType::F32, nullptr, Strategy::TaskArithmetic,
                             g_openblas ? 0 : 3 * kPreserveBlockRows);
      CHECK(std::memcmp(e1.out.data(), e3.out.data(), e1.out.size() * 4) == 0, "%s: n=520 same bytes for 1 vs 3 threads%s",
            simd_name(SimdLevel(lv)), g_openblas ? "" : ", blocked caller");
    }
  }

  // 8. The stream: an augmented weight task (bias read from the file, preserved bias out), then the
  //    bias edited as its own [1, m] tensor from those task vectors; same bytes as run_edit.
  {
    const int64_t d = n + 1;
    VF Kaug(size_t(300 * d));
    for (int64_t r = 0; r < 300; ++r) {
      for (int64_t j = 0; j < n; ++j) Kaug[size_t(r * d + j)] = K0[size_t(r * n + j)];
      Kaug[size_t(r * d + n)] = 1.0f;
    }
    PreserveSpec sa;
    sa.keys = Kaug.data(); sa.keys_rows = 300; sa.keys_cols = d; sa.tensor = "w";
    PreserveBuildOptions ba;
    ba.cols = n;
    ba.has_bias = true;
    const auto Pa = build_preserve(sa, ba);
    VF bb = randn(g, size_t(m)), bo_ = randn(g, size_t(m)), bn = randn(g, size_t(m));
    char path[] = "/tmp/geoedit_preserve_XXXXXX";
    const int fd = mkstemp(path);
    std::vector<const VF*> parts = {&base, &old_, &new_, &bb, &bo_, &bn};
    std::vector<uint64_t> offs;
    uint64_t off = 0;
    for (const VF* v : parts) {
      offs.push_back(off);
      CHECK(pwrite(fd, v->data(), v->size() * 4, off_t(off)) == ssize_t(v->size() * 4), "write");
      off += v->size() * 4;
    }
    char opath[] = "/tmp/geoedit_preserve_out_XXXXXX";
    const int ofd = mkstemp(opath);
    auto src = [&](int q) { StreamSrc x; x.fd = fd; x.offset = offs[size_t(q)]; x.dtype = DType::F32; x.file = path; return x; };
    VF tau_o(static_cast<size_t>(m)), tau_n(static_cast<size_t>(m));
    PreserveStats st;
    std::vector<StreamTask> tasks(2);
    StreamTask& w = tasks[0];
    w.name = "w"; w.rows = m; w.cols = n;
    w.base = src(0); w.old_ = src(1); w.new_ = src(2);
    w.out_fd = ofd; w.out_offset = 0; w.out_dtype = DType::F32;
    w.preserve = Pa.get(); w.preserve_stats = &st;
    w.bias_base = src(3); w.bias_old = src(4); w.bias_new = src(5);
    w.bias_tau_old_out = tau_o.data(); w.bias_tau_new_out = tau_n.data();
    StreamTask& bt = tasks[1];
    bt.name = "b"; bt.rows = 1; bt.cols = m;
    bt.base = src(3);
    bt.tau_old_mem = tau_o.data(); bt.tau_new_mem = tau_n.data();
    bt.out_fd = ofd; bt.out_offset = uint64_t(m * n) * 4; bt.out_dtype = DType::F32;
    Params p;
    p.strategy = Strategy::GeoEdit;
    RunOptions ro;
    ro.threads = 2;
    StreamControl ctl;
    run_stream(tasks, p, ro, 4096 /* tiny blocks: rounded up to whole GEMM blocks */, ctl);
    VF got(size_t(m * n + m));
    CHECK(pread(ofd, got.data(), got.size() * 4, 0) == ssize_t(got.size() * 4), "read back");
    // In memory: the same weight edit, then the bias as one row from the preserved bias task vectors.
    VF mo(static_cast<size_t>(m)), mn(static_cast<size_t>(m));
    PreserveBias pb;
    pb.base = {DType::F32, bb.data()}; pb.old_ = {DType::F32, bo_.data()}; pb.new_ = {DType::F32, bn.data()};
    pb.tau_old_out = mo.data(); pb.tau_new_out = mn.data();
    const Edited e = edit(Pa.get(), m, n, base, old_, new_, 1, -1, DType::F32, &pb, Strategy::GeoEdit);
    CHECK(std::memcmp(got.data(), e.out.data(), e.out.size() * 4) == 0, "stream weight = run_edit weight (bytes)");
    CHECK(mo == tau_o && mn == tau_n, "stream preserved bias tau = run_edit's");
    CHECK(std::memcmp(&st, &e.st, sizeof st) == 0, "stream energy sums = run_edit's");
    VF bout(static_cast<size_t>(m));
    EditJob bj;
    bj.rows = 1; bj.cols = m;
    bj.base = {DType::F32, bb.data()}; bj.old_ = {DType::F32, mo.data()}; bj.new_ = {DType::F32, mn.data()};
    bj.tau_given = true; bj.out = bout.data(); bj.out_dtype = DType::F32;
    run_edit(bj, p);
    CHECK(std::memcmp(got.data() + m * n, bout.data(), bout.size() * 4) == 0, "stream bias task from in-memory tau");
    // the bias moved: its preserved task vector is not the raw one
    double diff = 0;
    for (int64_t i = 0; i < m; ++i) diff += std::fabs(double(mn[size_t(i)]) - (double(bn[size_t(i)]) - bb[size_t(i)]));
    CHECK(diff > 0, "the bias was preserved with the weight (changed)");
    close(fd); close(ofd); unlink(path); unlink(opath);
  }

  // 9. The projector path (what the CUDA backend uses: fixed blocks of kPreserveCudaBlockRows rows per
  //    side, one after the other, the rows of each block on the pool), here with the CPU's own block
  //    GEMM as the projector: within the tolerance of the f64 reference, same bytes for any thread
  //    count, the same energies, and every row counted as projected by the projector.
  {
    const RowProjector proj = [](const Preserve& Op, const float* X, int64_t rows, float* Y) {
      preserve_rows_block(Op, X, rows, Y, active_simd());
    };
    auto run_proj = [&](int threads) {
      Edited e;
      e.out.resize(size_t(m * n));
      e.cos.resize(size_t(m));
      EditJob j;
      j.rows = m; j.cols = n;
      j.base = {DType::F32, zero.data()}; j.old_ = {DType::F32, zero.data()}; j.new_ = {DType::F32, tb32.data()};
      j.out = e.out.data(); j.stats.cos = e.cos.data(); j.tensor_name = "w";
      j.preserve = Pr.get(); j.preserve_stats = &e.st;
      Params p;
      p.strategy = Strategy::TaskArithmetic;
      RunOptions ro;
      ro.threads = threads;
      run_edit_projected(j, p, ro, proj, kPreserveCudaBlockRows);
      return e;
    };
    const Edited p1 = run_proj(1), p3 = run_proj(3);
    CHECK(max_rel_err(p1.out, tb64, Pref, m, n, n, n) <= 1e-5, "projector path within 1e-5·||x||");
    CHECK(std::memcmp(p1.out.data(), p3.out.data(), p1.out.size() * 4) == 0, "projector path: same bytes for 1 and 3 threads");
    CHECK(p1.st.gpu_rows == m && p1.st.rows == m, "projector rows counted (%lld)", (long long)p1.st.gpu_rows);
    const Edited eb = edit(Pr.get(), m, n, zero, zero, tb32, 2, -1);
    CHECK(std::fabs(p1.st.new_before - eb.st.new_before) <= 1e-12 * eb.st.new_before, "projector path: the same energy before");
  }

}

// The two providers on one operator: each within the SPEC §5 tolerance of the f64 reference, each
// the same bytes for 1, 2 and 3 threads and from run to run, and named in preserve_provider.
static void cross_provider() {
  std::mt19937 g(99);
  const int64_t n = 300, m = 3500;  // two full groups (kPreserveGroupRows) and a partial one; 4 and 2 row tiles
  const VF K = keys(g, 600, n, 1.5f);
  const VF Cf = to_f32(gram64(K, 600, n));
  const VD Pref = ref_P(VD(Cf.begin(), Cf.end()), {}, n, 0.3, 0);
  const VF t = randn(g, size_t(m * n), 0.05f), z(size_t(m * n), 0.0f);
  const VD td(t.begin(), t.end());
  PreserveSpec s;
  s.cov = Cf.data(); s.cov_rows = s.cov_cols = n; s.rho = 0.3; s.tensor = "x";
  PreserveBuildOptions b;
  b.cols = n;
  b.blas = BlasChoice::Eigen;
  const auto Pe = build_preserve(s, b);
  CHECK(!Pe->openblas && preserve_provider(*Pe, active_simd()).rfind("eigen-", 0) == 0, "eigen provider named (%s)",
        preserve_provider(*Pe, active_simd()).c_str());
  const Edited e1 = edit(Pe.get(), m, n, z, z, t, 1, -1);
  CHECK(max_rel_err(e1.out, td, Pref, m, n, n, n) <= 1e-5, "eigen: within 1e-5·||x|| (%g)", max_rel_err(e1.out, td, Pref, m, n, n, n));
  if (!openblas_info().available) {
    std::printf("SKIP cross-provider checks: %s\n", openblas_info().reason.c_str());
    CHECK(throws(ErrorCode::InvalidArgument, {"GEOEDIT_BLAS", "OpenBLAS"}, [&] {
            PreserveBuildOptions bb = b;
            bb.blas = BlasChoice::OpenBlas;
            build_preserve(s, bb);
          }), "OpenBLAS asked for but missing: a coded error");
    return;
  }
  b.blas = BlasChoice::OpenBlas;
  const auto Po = build_preserve(s, b);
  const std::string name = preserve_provider(*Po, active_simd());
  CHECK(Po->openblas && name == openblas_info().provider && name.rfind("openblas-", 0) == 0 && Po->factored_by == name,
        "openblas provider named (%s, factored by %s)", name.c_str(), Po->factored_by.c_str());
  double pdiff = 0;
  for (size_t i = 0; i < Po->P.size(); ++i) pdiff = std::max(pdiff, double(std::fabs(Po->P[i] - Pe->P[i])));
  CHECK(pdiff < 1e-5, "the two providers' operators agree (max |dP| %g)", pdiff);
  const Edited o1 = edit(Po.get(), m, n, z, z, t, 1, -1), o2 = edit(Po.get(), m, n, z, z, t, 2, -1),
               o3 = edit(Po.get(), m, n, z, z, t, 3, -1), o2b = edit(Po.get(), m, n, z, z, t, 2, -1);
  const double eo = max_rel_err(o1.out, td, Pref, m, n, n, n);
  CHECK(eo <= 1e-5 && eo > 0, "openblas: within 1e-5·||x|| (%g)", eo);
  const size_t bytes = o1.out.size() * 4;
  CHECK(std::memcmp(o1.out.data(), o2.out.data(), bytes) == 0 && std::memcmp(o1.out.data(), o3.out.data(), bytes) == 0,
        "openblas: same bytes for 1, 2 and 3 threads");
  CHECK(std::memcmp(o2.out.data(), o2b.out.data(), bytes) == 0, "openblas: same bytes run to run");
  const Edited e2 = edit(Pe.get(), m, n, z, z, t, 2, -1);
  CHECK(std::memcmp(e1.out.data(), e2.out.data(), bytes) == 0, "eigen: same bytes for 1 and 2 threads");
  // A caller that splits the tensor at a multiple of kPreserveGroupRows (the stream does): the same bytes.
  const Edited ob = edit(Po.get(), m, n, z, z, t, 2, -1, DType::F32, nullptr, Strategy::TaskArithmetic, kPreserveGroupRows);
  CHECK(std::memcmp(o1.out.data(), ob.out.data(), bytes) == 0, "openblas: caller blocks of kPreserveGroupRows rows, same bytes");
  VF ya(size_t(m * n));
  Po->apply(t.data(), m, ya.data(), 2, -1);
  CHECK(std::memcmp(ya.data(), o1.out.data(), bytes) == 0, "openblas: Preserve::apply = run_edit's preserved rows (n=300)");
  // The blocked Cholesky (panels of 256, tiles of 512 on the pool): several tiles per step at d = 1300;
  // the operator's bytes for 1 and 3 threads, and against Eigen's single-threaded LLT.
  {
    const int64_t d = 1300;
    std::mt19937 g2(5);
    std::uniform_real_distribution<float> u(0.f, 1.f);
    VF v(static_cast<size_t>(d)), C(size_t(d * d));
    for (auto& x : v) x = u(g2) + 0.5f;
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) C[size_t(i * d + j)] = 0.2f * v[size_t(i)] * v[size_t(j)] + (i == j ? 1.0f + u(g2) : 0.0f);
    PreserveSpec sb;
    sb.cov = C.data(); sb.cov_rows = sb.cov_cols = d; sb.rho = 0.3; sb.tensor = "big";
    PreserveBuildOptions o1;
    o1.cols = d;
    o1.blas = BlasChoice::OpenBlas;
    o1.threads = 1;
    PreserveBuildOptions o3 = o1, oe = o1;
    o3.threads = 3;
    oe.blas = BlasChoice::Eigen;
    const auto B1 = build_preserve(sb, o1), B3 = build_preserve(sb, o3), Be = build_preserve(sb, oe);
    CHECK(std::memcmp(B1->P.data(), B3->P.data(), B1->P.size() * 4) == 0, "openblas blocked Cholesky: the same operator for 1 and 3 threads");
    double worst = 0, pmax = 0;
    for (size_t i = 0; i < B1->P.size(); ++i) { worst = std::max(worst, double(std::fabs(B1->P[i] - Be->P[i]))); pmax = std::max(pmax, double(std::fabs(Be->P[i]))); }
    CHECK(worst <= 1e-6 * pmax, "openblas vs eigen operator at d = 1300: %g (max |P| %g)", worst, pmax);
  }
  // A GEOEDIT_BLAS-free default for the rest: set_default_blas overrides the environment.
  set_default_blas(BlasChoice::Eigen);
  CHECK(resolve_blas(BlasChoice::Default) == BlasChoice::Eigen && resolve_blas(BlasChoice::Auto) == BlasChoice::OpenBlas,
        "default and auto resolve");
  set_default_blas(BlasChoice::Default);
}

int main() {
  std::printf("== provider eigen\n");
  set_default_blas(BlasChoice::Eigen);
  run_suite();
  if (openblas_info().available) {
    std::printf("== provider %s (%s)\n", openblas_info().provider.c_str(), openblas_info().lib.c_str());
    set_default_blas(BlasChoice::OpenBlas);
    g_openblas = true;
    run_suite();
    g_openblas = false;
  } else {
    std::printf("SKIP the suite on OpenBLAS: %s\n", openblas_info().reason.c_str());
  }
  set_default_blas(BlasChoice::Default);
  std::printf("== both providers\n");
  cross_provider();
  std::printf("preserve_test: %d checks, %d passed, %d failed\n", checks, checks - failures, failures);
  return failures ? 1 : 0;
}
