// The system's OpenBLAS through dlopen (see blas.h).
#include "blas.h"

#include <dlfcn.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "geoedit/geoedit.h"
#include "pool.h"

namespace geoedit {

namespace {

// CBLAS enums (cblas.h): CblasRowMajor, CblasColMajor, CblasNoTrans, CblasTrans, CblasLeft, CblasLower, CblasNonUnit.
enum { kRowMajor = 101, kColMajor = 102, kNoTrans = 111, kTrans = 112, kLeft = 141, kRight = 142, kLower = 122, kNonUnit = 131 };

// The entry points, with 32-bit (LP64) or 64-bit (ILP64, libopenblas64_) integers.
template <class I>
struct Fns {
  void (*sgemm)(int, int, int, I, I, I, float, const float*, I, const float*, I, float, float*, I) = nullptr;
  void (*dtrsm)(int, int, int, int, int, I, I, double, const double*, I, double*, I) = nullptr;
  void (*dgemm)(int, int, int, I, I, I, double, const double*, I, const double*, I, double, double*, I) = nullptr;
  void (*dsyrk)(int, int, int, I, I, double, const double*, I, double, double*, I) = nullptr;
  // LAPACK (Fortran calling convention; the trailing hidden length of the character argument is
  // passed too: OpenBLAS's own C dpotrf ignores it, a Fortran one reads it).
  void (*dpotrf)(const char*, const I*, double*, const I*, I*, size_t) = nullptr;
  void (*set_threads)(int) = nullptr;
  char* (*config)() = nullptr;
  char* (*corename)() = nullptr;
};

struct Loaded {
  OpenBlasInfo info;
  Fns<int32_t> f32;
  Fns<int64_t> f64;
};

template <class F>
bool sym(void* h, const std::string& name, F* f, std::string* why) {
  *f = reinterpret_cast<F>(dlsym(h, name.c_str()));
  if (!*f && why->empty()) *why = "missing entry point " + name;
  return *f != nullptr;
}

// The entry points named prefix + name + suffix: "" + "" (libopenblas), "" + "64_" (libopenblas64_),
// "scipy_" + "64_" (libscipy_openblas64_, the build numpy and scipy wheels bundle).
template <class I>
bool bind_entry_points(void* h, const std::string& pre, const std::string& s, Fns<I>* f, std::string* why) {
  bool ok = sym(h, pre + "cblas_sgemm" + s, &f->sgemm, why);
  ok = sym(h, pre + "cblas_dtrsm" + s, &f->dtrsm, why) && ok;
  ok = sym(h, pre + "cblas_dgemm" + s, &f->dgemm, why) && ok;
  ok = sym(h, pre + "cblas_dsyrk" + s, &f->dsyrk, why) && ok;
  ok = sym(h, pre + "dpotrf_" + s, &f->dpotrf, why) && ok;
  ok = sym(h, pre + "openblas_set_num_threads" + s, &f->set_threads, why) && ok;
  ok = sym(h, pre + "openblas_get_config" + s, &f->config, why) && ok;
  std::string optional;
  sym(h, pre + "openblas_get_corename" + s, &f->corename, &optional);
  return ok && f->sgemm && f->dtrsm && f->dgemm && f->dsyrk && f->dpotrf && f->set_threads && f->config;
}

std::string version_of(const std::string& config) {
  // "OpenBLAS 0.3.21 DYNAMIC_ARCH ..." -> "0.3.21"
  const size_t p = config.find("OpenBLAS ");
  if (p == std::string::npos) return "";
  size_t a = p + 9, b = a;
  while (b < config.size() && config[b] != ' ') ++b;
  return config.substr(a, b - a);
}

// Sets an environment variable for the duration of dlopen (OpenBLAS reads OPENBLAS_CORETYPE and
// OPENBLAS_NUM_THREADS in its load-time constructor), unless the user set it; restored afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (value && !std::getenv(name)) set_ = ::setenv(name, value, 0) == 0;
  }
  ~ScopedEnv() {
    if (set_) ::unsetenv(name_);
  }

 private:
  const char* name_;
  bool set_ = false;
};

// The kernel set OpenBLAS should use on this CPU. OpenBLAS names the CPU from its family/model at
// load; a release older than the CPU (Debian 12's 0.3.21 on Emerald Rapids, model 207) falls back to
// its Prescott (SSE3) kernels, about 8x slower. So the load names the kernel set from our own
// feature detection (detect_simd: GEOEDIT_SIMD caps it): SkylakeX with AVX-512 F/BW/VL/DQ, Haswell
// with AVX2 + FMA; a user's OPENBLAS_CORETYPE wins.
const char* coretype_for_cpu() {
  switch (detect_simd()) {
    case SimdLevel::AVX512: return "SkylakeX";
    case SimdLevel::AVX2: return "Haswell";
    default: return nullptr;
  }
}

const Loaded& loaded() {
  static const Loaded L = [] {
    Loaded r;
    std::string errs;
    // One thread: no idle OpenBLAS server threads are started (openblas_set_num_threads(1) below too).
    ScopedEnv threads("OPENBLAS_NUM_THREADS", "1"), core("OPENBLAS_CORETYPE", coretype_for_cpu());
    // GEOEDIT_BLAS_LIB: this file only (any of the three flavours, told apart by their entry points).
    const char* forced = std::getenv("GEOEDIT_BLAS_LIB");
    std::vector<std::string> libs;
    if (forced && *forced) libs.push_back(forced);
    else libs = {"libopenblas.so.0", "libopenblas.so", "libopenblas64_.so.0"};
    for (const std::string& lib : libs) {
      dlerror();
      void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        const char* e = dlerror();
        errs += std::string(errs.empty() ? "" : "; ") + (e ? e : lib.c_str());
        continue;
      }
      std::string why, why64, whysp;
      bool ilp64 = false;
      bool ok = bind_entry_points(h, "", "", &r.f32, &why);
      if (!ok) ok = ilp64 = bind_entry_points(h, "", "64_", &r.f64, &why64);
      if (!ok) ok = ilp64 = bind_entry_points(h, "scipy_", "64_", &r.f64, &whysp);
      if (!ok) {
        errs += std::string(errs.empty() ? "" : "; ") + lib + ": " + why;
        dlclose(h);
        continue;
      }
      OpenBlasInfo& I = r.info;
      I.available = true;
      I.lib = lib;
      I.ilp64 = ilp64;
      // One thread inside OpenBLAS: our pool runs the calls (the bytes do not depend on our thread count).
      if (ilp64) r.f64.set_threads(1); else r.f32.set_threads(1);
      char* cfg = ilp64 ? r.f64.config() : r.f32.config();
      I.config = cfg ? cfg : "";
      while (!I.config.empty() && I.config.back() == ' ') I.config.pop_back();
      char* core = ilp64 ? (r.f64.corename ? r.f64.corename() : nullptr) : (r.f32.corename ? r.f32.corename() : nullptr);
      I.core = core ? core : "";
      I.version = version_of(I.config);
      I.provider = "openblas-" + (I.version.empty() ? std::string("unknown") : I.version) + (I.core.empty() ? "" : "-" + I.core);
      return r;
    }
    r.info.reason = forced && *forced ? "GEOEDIT_BLAS_LIB=" + std::string(forced) + " is not a usable OpenBLAS (" + errs + ")"
                                      : "libopenblas not found (" + errs + "); install libopenblas0-pthread (Debian/Ubuntu) or openblas (Fedora)";
    return r;
  }();
  return L;
}

std::atomic<int> g_default{int(BlasChoice::Default)};

}  // namespace

const OpenBlasInfo& openblas_info() { return loaded().info; }

BlasChoice blas_choice_from_env() {
  static const BlasChoice c = [] {
    const char* e = std::getenv("GEOEDIT_BLAS");
    if (!e || !*e || std::strcmp(e, "auto") == 0) return BlasChoice::Auto;
    if (std::strcmp(e, "eigen") == 0) return BlasChoice::Eigen;
    if (std::strcmp(e, "openblas") == 0) return BlasChoice::OpenBlas;
    return BlasChoice::Default;  // unknown: resolve_blas says so
  }();
  return c;
}

void set_default_blas(BlasChoice c) { g_default.store(int(c)); }

BlasChoice resolve_blas(BlasChoice c) {
  if (c == BlasChoice::Default) c = BlasChoice(g_default.load());
  if (c == BlasChoice::Default) {
    c = blas_choice_from_env();
    if (c == BlasChoice::Default) {
      ErrorDetails d;
      d.option = "GEOEDIT_BLAS";
      throw Error(ErrorCode::InvalidArgument,
                  std::string("Expected 'auto', 'eigen' or 'openblas' for GEOEDIT_BLAS but received '") + std::getenv("GEOEDIT_BLAS") + "'", d);
    }
  }
  if (c == BlasChoice::Auto) return openblas_info().available ? BlasChoice::OpenBlas : BlasChoice::Eigen;
  if (c == BlasChoice::OpenBlas && !openblas_info().available) {
    ErrorDetails d;
    d.option = "GEOEDIT_BLAS";
    throw Error(ErrorCode::InvalidArgument, "OpenBLAS was asked for (GEOEDIT_BLAS=openblas or blas: 'openblas') but cannot be used: " +
                                                openblas_info().reason, d);
  }
  return c;
}

void openblas_sgemm(const float* X, int64_t rows, int64_t kd, int64_t ldx, const float* P, int64_t ldp, int64_t nout,
                    float* Y, int64_t ldy) {
  const Loaded& L = loaded();
  if (L.info.ilp64)
    L.f64.sgemm(kRowMajor, kNoTrans, kNoTrans, rows, nout, kd, 1.0f, X, ldx, P, ldp, 0.0f, Y, ldy);
  else
    L.f32.sgemm(kRowMajor, kNoTrans, kNoTrans, int32_t(rows), int32_t(nout), int32_t(kd), 1.0f, X, int32_t(ldx), P,
                int32_t(ldp), 0.0f, Y, int32_t(ldy));
}

namespace {

template <class I>
bool potrf(const Fns<I>& f, double* A, int64_t n, int64_t ld) {
  const char lo = 'L';
  I nn = I(n), ll = I(ld), info = 0;
  f.dpotrf(&lo, &nn, A, &ll, &info, 1);
  return info == 0;
}

// Blocked right-looking Cholesky on the pool: panels of kPanel columns (dpotrf of the diagonal block on
// one thread), the panel below it (dtrsm) in fixed chunks of kTile rows, the trailing lower triangle
// (dsyrk on diagonal tiles, dgemm below) in fixed kTile × kTile tiles, each call on one thread. The
// tiles depend only on d: the same bytes for any thread count.
template <class I>
bool blocked_cholesky(const Fns<I>& f, double* A, int64_t d, int threads) {
  constexpr int64_t kPanel = 256, kTile = 512;
  for (int64_t k = 0; k < d; k += kPanel) {
    const int64_t b = std::min(kPanel, d - k), m = d - k - b;
    double* Akk = A + k + k * d;
    if (!potrf(f, Akk, b, d)) return false;
    if (m == 0) break;
    double* Aik = A + (k + b) + k * d;  // m × b panel below the diagonal block
    const int64_t nrt = (m + kTile - 1) / kTile;
    parallel_for(nrt, 1, threads, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r0 = t * kTile, nr = std::min(kTile, m - r0);
        f.dtrsm(kColMajor, kRight, kLower, kTrans, kNonUnit, I(nr), I(b), 1.0, Akk, I(d), Aik + r0, I(d));
      }
    });
    // Trailing A[k+b:, k+b:] -= Aik·Aik^T, lower triangle, tile (i, j) with j <= i.
    const int64_t ntiles = nrt * (nrt + 1) / 2;
    parallel_for(ntiles, 1, threads, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        int64_t i = 0;
        while ((i + 1) * (i + 2) / 2 <= q) ++i;
        const int64_t j = q - i * (i + 1) / 2;
        const int64_t ri = i * kTile, ni = std::min(kTile, m - ri), rj = j * kTile, nj = std::min(kTile, m - rj);
        double* C = A + (k + b + ri) + (k + b + rj) * d;
        if (i == j) f.dsyrk(kColMajor, kLower, kNoTrans, I(ni), I(b), -1.0, Aik + ri, I(d), 1.0, C, I(d));
        else f.dgemm(kColMajor, kNoTrans, kTrans, I(ni), I(nj), I(b), -1.0, Aik + ri, I(d), Aik + rj, I(d), 1.0, C, I(d));
      }
    });
  }
  return true;
}

}  // namespace

bool openblas_cholesky(double* S, int64_t d, int threads) {
  const Loaded& L = loaded();
  return L.info.ilp64 ? blocked_cholesky(L.f64, S, d, threads) : blocked_cholesky(L.f32, S, d, threads);
}

void openblas_solve_cols(const double* L_, int64_t d, double* B, int64_t c0, int64_t c1) {
  const Loaded& L = loaded();
  double* Bc = B + c0 * d;
  const int64_t nc = c1 - c0;
  if (nc <= 0) return;
  if (L.info.ilp64) {
    L.f64.dtrsm(kColMajor, kLeft, kLower, kNoTrans, kNonUnit, d, nc, 1.0, L_, d, Bc, d);
    L.f64.dtrsm(kColMajor, kLeft, kLower, kTrans, kNonUnit, d, nc, 1.0, L_, d, Bc, d);
  } else {
    const int32_t n = int32_t(d), m = int32_t(nc);
    L.f32.dtrsm(kColMajor, kLeft, kLower, kNoTrans, kNonUnit, n, m, 1.0, L_, n, Bc, n);
    L.f32.dtrsm(kColMajor, kLeft, kLower, kTrans, kNonUnit, n, m, 1.0, L_, n, Bc, n);
  }
}

}  // namespace geoedit
