// SPEC §3.1, §3.2, §3.4, §3.5 as small inline functions: the one place the per-row rules live.
// Both the dense row path (edit.cc) and the LoRA factor path (lora.cc) call these, so a row gets
// the same cos, region and coefficients whichever path computed its dot/na/nb.
#pragma once
#include <cmath>
#include "geoedit/geoedit.h"

namespace geoedit {

// §3.1: cos from f64 sums; 0 when either side is zero (or the value is not finite).
inline double row_cos(double dot, double na, double nb) {
  if (!(std::isfinite(dot) && std::isfinite(na) && std::isfinite(nb))) return 0;
  if (!(na > 0 && nb > 0)) return 0;
  const double c = dot / std::sqrt(na * nb);
  return std::isfinite(c) ? c : 0;
}

// §3.2: orthogonal if |cos| <= t, else synergy (cos > 0) or conflict (cos < 0).
inline Region row_region(double cosv, double t) {
  if (std::fabs(cosv) <= t) return Region::Orthogonal;
  return cosv > 0 ? Region::Synergy : Region::Conflict;
}

// §3.4: w_old from the neuron importances s_a (old) and s_b (new).
inline double importance_w_old(double sa, double sb, double temperature) {
  if (sa + sb == 0) return 0.5;
  const double r_old = sa / (sa + sb), r_new = 1.0 - r_old;
  return 1.0 / (1.0 + std::exp((r_new - r_old) / temperature));
}

// §3.5: (c_new, c_old) by strategy and region. `w_old` is a callable returning w_old, called
// only when the rule needs it (computing it may require trimming). custom_new/custom_old are
// the caller's per-row values for strategy Custom (ignored otherwise).
template <class WOld>
inline void row_coefficients(const Params& p, Region region, double custom_new, double custom_old, WOld&& w_old,
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
inline double applied_energy(double cn, double co, double dot, double na, double nb) {
  return cn * cn * nb + 2 * cn * co * dot + co * co * na;
}

}  // namespace geoedit
