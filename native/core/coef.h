// The per-row scalar rules of SPEC §3.1, §3.2, §3.4 and §3.5, shared by the C++ core
// (native/core/edit.cc) and the CUDA kernels (native/cuda/): cos from the f64 sums, the region,
// the importance weight w_old and the coefficients (c_new, c_old). One definition, compiled as
// host code by the C++ compiler and as __host__ __device__ code by nvcc, so every backend applies
// the same rules in the same order of operations.
#pragma once

#include <cmath>

#include "geoedit/geoedit.h"

#if defined(__CUDACC__)
#define GEOEDIT_HD __host__ __device__ __forceinline__
#else
#define GEOEDIT_HD inline
#endif

namespace geoedit {
namespace coef {

#if !defined(__CUDA_ARCH__)
using std::ceil;
using std::exp;
using std::fabs;
using std::isfinite;
using std::sin;
using std::sqrt;
#endif

// SPEC §3.1: cos = dot / sqrt(na·nb) when both norms are > 0 and every sum is finite, else 0.
GEOEDIT_HD double row_cos(double dot, double na, double nb) {
  const bool finite = isfinite(dot) && isfinite(na) && isfinite(nb);
  double c = 0;
  if (finite && na > 0 && nb > 0) {
    c = dot / sqrt(na * nb);
    if (!isfinite(c)) c = 0;
  }
  return c;
}

GEOEDIT_HD bool sums_finite(double dot, double na, double nb) {
  return isfinite(dot) && isfinite(na) && isfinite(nb);
}

// SPEC §3.2: the threshold t on |cos| for a row of n columns (kappa / sqrt(n), or sin(band)).
GEOEDIT_HD double threshold(const Params& p, long long n) {
  if (p.band_degrees >= 0) return sin(p.band_degrees * 3.14159265358979323846 / 180.0);
  return n > 0 ? p.kappa / sqrt(double(n)) : HUGE_VAL;
}

// SPEC §3.2: orthogonal when |cos| <= t, else synergy (cos > 0) or conflict (cos < 0).
GEOEDIT_HD Region region_of(double cosv, double t) {
  if (!(fabs(cosv) <= t)) return cosv > 0 ? Region::Synergy : Region::Conflict;
  return Region::Orthogonal;
}

// SPEC §3.4: w_old from the neuron importances s_a, s_b and the temperature T.
GEOEDIT_HD double weight_old(double sa, double sb, double temperature) {
  if (sa + sb == 0) return 0.5;
  const double r_old = sa / (sa + sb), r_new = 1.0 - r_old;
  return 1.0 / (1.0 + exp((r_new - r_old) / temperature));
}

// Whether the coefficients of a row in `region` depend on w_old (so s_a, s_b must be computed).
GEOEDIT_HD bool needs_weight(const Params& p, Region region) {
  if (p.strategy != Strategy::GeoEdit) return false;
  if (region == Region::Synergy) return p.fuse_aligned != 0;
  if (region == Region::Conflict) return p.forget_conflicting != 0;
  return false;
}

// SPEC §3.5: the coefficients (c_new, c_old) of a row, rounded to f32 as they are applied.
// w_old is only read when needs_weight(p, region); custom_new/custom_old only for Strategy::Custom.
GEOEDIT_HD void coefficients(const Params& p, Region region, double w_old, float custom_new, float custom_old,
                             float* c_new, float* c_old) {
  double cn = 0, co = 0;
  const double alpha = p.scale;
  switch (p.strategy) {
    case Strategy::GeoEdit:
      if (region == Region::Orthogonal) { cn = alpha * p.keep_orthogonal; co = 0; }
      else if (region == Region::Synergy) { cn = alpha; co = p.fuse_aligned == 0 ? 0.0 : p.fuse_aligned * 2.0 * w_old; }
      else { cn = alpha; co = p.forget_conflicting == 0 ? 0.0 : -p.forget_conflicting * 2.0 * w_old; }
      break;
    case Strategy::ForgetThenLearn: cn = alpha; co = -p.lambda; break;
    case Strategy::TaskArithmetic: cn = alpha; co = 0; break;
    case Strategy::Custom: cn = alpha * double(custom_new); co = double(custom_old); break;
  }
  *c_new = float(cn);
  *c_old = float(co);
}

// SPEC §3.3: how many entries a trimmed row keeps, k = max(1, ceil(rho·n)) (n when rho = 1).
GEOEDIT_HD long long keep_count(double density, long long n) {
  if (!(density < 1.0) || n <= 0) return n;
  const long long k = (long long)ceil(density * double(n));
  return k < 1 ? 1 : k;
}

}  // namespace coef
}  // namespace geoedit
