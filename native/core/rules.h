// SPEC §3.1, §3.2, §3.3, §3.4, §3.5 as small inline functions: the one place the per-row rules live.
// The dense row path (edit.cc), the LoRA factor path (lora.cc) and the CUDA kernels
// (native/cuda/edit_kernels.cu, plugin.cu; also compiled as C++ by the CPU emulator) call these,
// so a row gets the same cos, region and coefficients whichever path computed its dot/na/nb.
// Plain C++ sees GEOEDIT_HD as `inline`; nvcc sees `__host__ __device__ __forceinline__`.
#pragma once
#include <cmath>
#include "geoedit/geoedit.h"

#if defined(__CUDACC__)
#define GEOEDIT_HD __host__ __device__ __forceinline__
#else
#define GEOEDIT_HD inline
#endif

namespace geoedit {
namespace rules {

// Unqualified math calls: std:: on the host, CUDA's device overloads in device code.
#if !defined(__CUDA_ARCH__)
using std::ceil;
using std::exp;
using std::fabs;
using std::isfinite;
using std::sin;
using std::sqrt;
#endif

// Whether every f64 row sum is finite (a non-finite row is rejected unless allowNonFinite).
GEOEDIT_HD bool sums_finite(double dot, double na, double nb) {
  return isfinite(dot) && isfinite(na) && isfinite(nb);
}

// §3.1: cos from f64 sums; 0 when either side is zero (or the value is not finite).
GEOEDIT_HD double row_cos(double dot, double na, double nb) {
  if (!sums_finite(dot, na, nb)) return 0;
  if (!(na > 0 && nb > 0)) return 0;
  const double c = dot / sqrt(na * nb);
  return isfinite(c) ? c : 0;
}

// §3.2: the threshold t on |cos| for a row of n columns (kappa / sqrt(n), or sin(band)).
GEOEDIT_HD double row_threshold(const Params& p, long long n) {
  if (p.band_degrees >= 0) return sin(p.band_degrees * 3.14159265358979323846 / 180.0);
  return n > 0 ? p.kappa / sqrt(double(n)) : HUGE_VAL;
}

// §3.2: orthogonal if |cos| <= t, else synergy (cos > 0) or conflict (cos < 0).
GEOEDIT_HD Region row_region(double cosv, double t) {
  if (fabs(cosv) <= t) return Region::Orthogonal;
  return cosv > 0 ? Region::Synergy : Region::Conflict;
}

// §3.3: how many entries a trimmed row keeps, k = max(1, ceil(rho*n)) (n when rho = 1).
GEOEDIT_HD long long keep_count(double density, long long n) {
  if (!(density < 1.0) || n <= 0) return n;
  const long long k = (long long)ceil(density * double(n));
  return k < 1 ? 1 : k;
}

// §3.4: w_old from the neuron importances s_a (old) and s_b (new).
GEOEDIT_HD double importance_w_old(double sa, double sb, double temperature) {
  if (sa + sb == 0) return 0.5;
  const double r_old = sa / (sa + sb), r_new = 1.0 - r_old;
  return 1.0 / (1.0 + exp((r_new - r_old) / temperature));
}

// §3.5: (c_new, c_old) by strategy and region. `w_old` is a callable returning w_old, called
// only when the rule needs it (computing it may require trimming). custom_new/custom_old are
// the caller's per-row values for strategy Custom (ignored otherwise).
template <class WOld>
GEOEDIT_HD void row_coefficients(const Params& p, Region region, double custom_new, double custom_old, WOld&& w_old,
                                 double* cn, double* co) {
  const double alpha = p.scale;
  switch (p.strategy) {
    case Strategy::GeoEdit:
      if (region == Region::Orthogonal) { *cn = alpha * p.keep_orthogonal; *co = 0; }
      else if (region == Region::Synergy) { *cn = alpha; *co = p.fuse_aligned == 0 ? 0.0 : p.fuse_aligned * 2.0 * w_old(); }
      else { *cn = alpha; *co = p.forget_conflicting == 0 ? 0.0 : -p.forget_conflicting * 2.0 * w_old(); }
      return;
    case Strategy::ForgetThenLearn: *cn = alpha; *co = -p.lambda; return;
    case Strategy::TaskArithmetic: *cn = alpha; *co = 0; return;
    case Strategy::Custom: *cn = alpha * custom_new; *co = custom_old; return;
  }
  *cn = 0;
  *co = 0;
}

// ||c_new*b + c_old*a||^2 from the row sums (what the report calls the applied energy).
GEOEDIT_HD double applied_energy(double cn, double co, double dot, double na, double nb) {
  return cn * cn * nb + 2 * cn * co * dot + co * co * na;
}

}  // namespace rules

using rules::applied_energy;
using rules::importance_w_old;
using rules::keep_count;
using rules::row_coefficients;
using rules::row_cos;
using rules::row_region;
using rules::row_threshold;
using rules::sums_finite;

}  // namespace geoedit
