// SPEC §3 step 0 on the GPU: the few cuBLAS / cuSOLVER entry points the plugin uses, declared here
// (their headers and libraries are not needed to build the plugin) and loaded at run time with
// dlopen: libcublas.so.13 / .12 / .11 and libcusolver.so.12 / .11 / .10, in that order. When they
// cannot be loaded, linalg() says why and the core projects on the CPU (cuda_preserve_status()).
// The libraries use the dynamic CUDA runtime while the plugin links it statically: both work on the
// driver's primary context, and every call here goes through the legacy default stream followed by
// a synchronisation, so no stream or event object crosses between the two runtimes.
// Under the CPU emulator (GEOEDIT_CUDA_EMU) the entry points are CPU stand-ins (emu/linalg_emu.h).
#pragma once
#include <dlfcn.h>

#include <cmath>
#include <mutex>
#include <string>

namespace geoedit_linalg {

typedef void* Handle;
enum { kOpN = 0, kOpT = 1 };          // cublasOperation_t
enum { kLower = 0, kUpper = 1 };      // cublasFillMode_t
enum { kDefaultMath = 0 };            // cublasMath_t: CUBLAS_DEFAULT_MATH (no TF32 for Sgemm)

struct Api {
  bool ok = false;
  std::string why;           // when !ok
  std::string libs;          // the libraries loaded
  int (*blas_create)(Handle*) = nullptr;
  int (*blas_set_math)(Handle, int) = nullptr;
  int (*sgemm)(Handle, int, int, int, int, int, const float*, const float*, int, const float*, int, const float*, float*,
               int) = nullptr;
  int (*solver_create)(Handle*) = nullptr;
  int (*potrf_buffer)(Handle, int, int, double*, int, int*) = nullptr;
  int (*potrf)(Handle, int, int, double*, int, double*, int, int*) = nullptr;
  int (*potrs)(Handle, int, int, int, const double*, int, double*, int, int*) = nullptr;
  Handle blas = nullptr, solver = nullptr;
};

#if defined(GEOEDIT_CUDA_EMU)
#include "linalg_emu.h"
#else
inline void* open_first(const char* const* names, std::string* got, std::string* errs) {
  for (const char* const* n = names; *n; ++n) {
    dlerror();
    if (void* h = dlopen(*n, RTLD_NOW | RTLD_LOCAL)) { *got = *n; return h; }
    const char* e = dlerror();
    *errs += std::string(errs->empty() ? "" : "; ") + (e ? e : *n);
  }
  return nullptr;
}
template <class F>
bool sym(void* h, const char* name, F* f, std::string* why) {
  *f = reinterpret_cast<F>(dlsym(h, name));
  if (!*f) *why = std::string("missing entry point ") + name;
  return *f != nullptr;
}
inline void load(Api& A) {
  static const char* const kBlas[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so", nullptr};
  static const char* const kSolver[] = {"libcusolver.so.12", "libcusolver.so.11", "libcusolver.so.10", "libcusolver.so", nullptr};
  std::string bn, sn, errs;
  void* b = open_first(kBlas, &bn, &errs);
  if (!b) { A.why = "cuBLAS could not be loaded (" + errs + ")"; return; }
  errs.clear();
  void* s = open_first(kSolver, &sn, &errs);
  if (!s) { A.why = "cuSOLVER could not be loaded (" + errs + ")"; return; }
  if (!sym(b, "cublasCreate_v2", &A.blas_create, &A.why) || !sym(b, "cublasSetMathMode", &A.blas_set_math, &A.why) ||
      !sym(b, "cublasSgemm_v2", &A.sgemm, &A.why) || !sym(s, "cusolverDnCreate", &A.solver_create, &A.why) ||
      !sym(s, "cusolverDnDpotrf_bufferSize", &A.potrf_buffer, &A.why) || !sym(s, "cusolverDnDpotrf", &A.potrf, &A.why) ||
      !sym(s, "cusolverDnDpotrs", &A.potrs, &A.why))
    return;
  A.libs = bn + " + " + sn;
}
#endif

// The loaded API (once per process); the handles are created on first use on device 0.
inline Api& api() {
  static Api A;
  static std::once_flag once;
  std::call_once(once, [] {
    load(A);
    if (!A.why.empty()) return;
    if (A.blas_create(&A.blas) != 0) { A.why = "cublasCreate failed"; return; }
    A.blas_set_math(A.blas, kDefaultMath);
    if (A.solver_create(&A.solver) != 0) { A.why = "cusolverDnCreate failed"; return; }
    A.ok = true;
  });
  return A;
}

}  // namespace geoedit_linalg
