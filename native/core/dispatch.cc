// Run-time SIMD selection: the binary stays x86-64 baseline; wider paths are chosen by CPUID.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels.h"

namespace geoedit {

const char* simd_name(SimdLevel s) {
  switch (s) {
    case SimdLevel::AVX512: return "avx512";
    case SimdLevel::AVX2: return "avx2";
    default: return "scalar";
  }
}

bool cpu_supports(SimdLevel s) {
#if defined(GEOEDIT_X86)
  __builtin_cpu_init();
  switch (s) {
    case SimdLevel::Scalar: return true;
    case SimdLevel::AVX2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case SimdLevel::AVX512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }
  return false;
#else
  return s == SimdLevel::Scalar;
#endif
}

SimdLevel detect_simd() {
  SimdLevel best = SimdLevel::Scalar;
  if (cpu_supports(SimdLevel::AVX2)) best = SimdLevel::AVX2;
  if (cpu_supports(SimdLevel::AVX512)) best = SimdLevel::AVX512;
  if (const char* env = std::getenv("GEOEDIT_SIMD")) {
    std::string v(env);
    SimdLevel cap = best;
    if (v == "scalar") cap = SimdLevel::Scalar;
    else if (v == "avx2") cap = SimdLevel::AVX2;
    else if (v == "avx512") cap = SimdLevel::AVX512;
    if (cap < best) best = cap;
  }
  return best;
}

namespace {
std::atomic<int> g_forced{-1};
}

SimdLevel active_simd() {
  static const SimdLevel detected = detect_simd();
  const int f = g_forced.load();
  return f >= 0 ? SimdLevel(f) : detected;
}

bool set_simd(SimdLevel s) {
  if (!cpu_supports(s)) return false;
  g_forced.store(int(s));
  return true;
}

const Kernels& kernels_for(SimdLevel level) {
#if defined(GEOEDIT_X86)
  if (level == SimdLevel::AVX512 && cpu_supports(SimdLevel::AVX512)) return kAvx512Kernels;
  if (level >= SimdLevel::AVX2 && cpu_supports(SimdLevel::AVX2)) return kAvx2Kernels;
#endif
  (void)level;
  return kScalarKernels;
}

}  // namespace geoedit
