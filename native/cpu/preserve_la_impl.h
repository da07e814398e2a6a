// The body of one PreserveLa table (preserve_la.h). Included once per ISA translation unit, after
//   #define GEOEDIT_LA_EIGEN_NS  geoedit_eigen_<isa>   (Eigen's namespace for this copy)
//   #define GEOEDIT_LA_TABLE     kPreserveLa<Isa>       (the table's name)
//   #define GEOEDIT_LA_NAME      "<isa>"
// Renaming Eigen's namespace keeps each ISA's instantiations of Eigen's templates apart: with one
// shared `Eigen` namespace, the linker would keep one copy of each weak template instantiation (say
// the AVX-512 one) for every caller, and the baseline path could execute AVX-512 code on a CPU
// without it. Everything here is in an anonymous namespace too; only the table is visible (and
// the core is built with -fvisibility=hidden). `nm` check: scripts/check-isa-symbols.sh.
#ifndef GEOEDIT_LA_EIGEN_NS
#error "define GEOEDIT_LA_EIGEN_NS before including preserve_la_impl.h"
#endif
#define Eigen GEOEDIT_LA_EIGEN_NS
#define EIGEN_DONT_PARALLELIZE 1  // our pool runs the row blocks; Eigen stays single-threaded
#define EIGEN_NO_DEBUG 1
#define EIGEN_MPL2_ONLY 1
#pragma GCC diagnostic ignored "-Wignored-attributes"  // Eigen's packet types as template arguments
#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <algorithm>
#include <chrono>

#include "preserve_la.h"

namespace geoedit {
namespace {

using MatRF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using MapRF = Eigen::Map<MatRF, 0, Eigen::OuterStride<>>;
using CMapRF = Eigen::Map<const MatRF, 0, Eigen::OuterStride<>>;
using MapD = Eigen::Map<MatD>;
using CMapD = Eigen::Map<const MatD>;

void la_gram(const float* K, int64_t N, int64_t d, double* C) {
  MapD Cm(C, d, d);
  Cm.setZero();
  const int64_t chunk = 256;  // fixed: the f64 sums' order does not depend on anything else
  MatD Kd;
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t r = std::min(chunk, N - r0);
    Kd = CMapRF(K + r0 * d, r, d, Eigen::OuterStride<>(d)).cast<double>();
    Cm.selfadjointView<Eigen::Lower>().rankUpdate(Kd.transpose(), 1.0);
  }
  const double inv = N > 0 ? 1.0 / double(N) : 0.0;
  for (int64_t j = 0; j < d; ++j)
    for (int64_t i = j; i < d; ++i) {
      const double v = Cm(i, j) * inv;
      Cm(i, j) = v;
      Cm(j, i) = v;
    }
}

bool la_cholesky(double* S, int64_t d) {
  MapD Sm(S, d, d);
  Eigen::LLT<Eigen::Ref<MatD>, Eigen::Lower> llt(Sm);
  return llt.info() == Eigen::Success;
}

void la_solve_cols(const double* L, int64_t d, double* B, int64_t c0, int64_t c1) {
  CMapD Lm(L, d, d);
  Eigen::Map<MatD> Bm(B + c0 * d, d, c1 - c0);
  Lm.triangularView<Eigen::Lower>().solveInPlace(Bm);
  Lm.transpose().triangularView<Eigen::Upper>().solveInPlace(Bm);
}

void la_gemm(const float* X, int64_t rows, int64_t kd, int64_t ldx, const float* P, int64_t ldp, int64_t nout, float* Y,
             int64_t ldy) {
  CMapRF Xm(X, rows, kd, Eigen::OuterStride<>(ldx));
  CMapRF Pm(P, kd, nout, Eigen::OuterStride<>(ldp));
  MapRF Ym(Y, rows, nout, Eigen::OuterStride<>(ldy));
  Ym.noalias() = Xm * Pm;
}

void la_basis(const float* X, int64_t rows, int64_t d, const float* U, int64_t k, float* Y) {
  CMapRF Xm(X, rows, d, Eigen::OuterStride<>(d));
  CMapRF Um(U, k, d, Eigen::OuterStride<>(d));
  MapRF Ym(Y, rows, d, Eigen::OuterStride<>(d));
  MatRF T(rows, k);
  T.noalias() = Xm * Um.transpose();
  Ym = Xm;
  Ym.noalias() -= T * Um;
}

void la_gram_rows(const float* U, int64_t k, int64_t d, double* G) {
  const MatD Ud = CMapRF(U, k, d, Eigen::OuterStride<>(d)).cast<double>();
  MapD Gm(G, k, k);
  Gm.noalias() = Ud * Ud.transpose();
}

// The best rate over short windows (about 2 ms each) within `seconds`: on a shared machine a
// window that ran undisturbed shows the core's rate; a long average would show the load.
double la_fma_peak(double seconds) {
  using Packet = Eigen::internal::packet_traits<float>::type;
  constexpr int W = Eigen::internal::unpacket_traits<Packet>::size;
  constexpr int A = 16;  // independent accumulators: > FMA latency x ports on current cores
  Packet acc[A];
  for (int i = 0; i < A; ++i) acc[i] = Eigen::internal::pset1<Packet>(0.001f * float(i + 1));
  const Packet m = Eigen::internal::pset1<Packet>(0.999999f), c = Eigen::internal::pset1<Packet>(1e-7f);
  const int64_t inner = 1 << 13;
  using clk = std::chrono::steady_clock;
  const auto start = clk::now();
  double best = 0;
  for (;;) {
    const auto t0 = clk::now();
    int64_t iters = 0;
    double el = 0;
    do {
      for (int64_t it = 0; it < inner; ++it)
        for (int i = 0; i < A; ++i) acc[i] = Eigen::internal::pmadd(acc[i], m, c);
      iters += inner;
      el = std::chrono::duration<double>(clk::now() - t0).count();
    } while (el < 0.002);
    best = std::max(best, 2.0 * W * A * double(iters) / el / 1e9);
    if (std::chrono::duration<double>(clk::now() - start).count() >= seconds) break;
  }
  float sink = 0;
  for (int i = 0; i < A; ++i) sink += Eigen::internal::predux(acc[i]);
  volatile float vs = sink;
  (void)vs;
  return best;
}

}  // namespace

extern const PreserveLa GEOEDIT_LA_TABLE;
const PreserveLa GEOEDIT_LA_TABLE = {GEOEDIT_LA_NAME, la_gram,         la_cholesky, la_solve_cols, la_gemm,
                                     la_basis,        la_gram_rows,    la_fma_peak};

}  // namespace geoedit
#undef Eigen
