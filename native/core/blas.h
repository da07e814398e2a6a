// The system's OpenBLAS for the preservation linear algebra (SPEC §3 step 0), found at run time with
// dlopen, like the OpenSSL hashing (hash.cc): no build or link dependency, so a prebuild loads on a
// machine without it and then uses Eigen (native/cpu/preserve_la_*.cc), which stays compiled in as
// the fallback. Plain C++ (no Node headers).
//
// Libraries tried, in order: libopenblas.so.0 (Debian/Ubuntu libopenblas0-pthread, -openmp or
// -serial; Fedora's openblas), libopenblas.so, libopenblas64_.so.0 (the ILP64 build, entry points
// suffixed 64_); or only the file GEOEDIT_BLAS_LIB names (any of those flavours, or the
// libscipy_openblas64_ that numpy/scipy wheels bundle: entry points scipy_*64_), e.g. a newer OpenBLAS
// than the distribution's. The few entry points used are declared here (no cblas.h needed): cblas_sgemm (the
// row GEMM), dpotrf_ + cblas_dtrsm + cblas_dsyrk + cblas_dgemm (the f64 Cholesky, blocked on our pool),
// cblas_dtrsm (the solve for P), openblas_set_num_threads,
// openblas_get_config, openblas_get_corename.
//
// Kernel set: OpenBLAS picks its kernels from the CPU's family/model when it loads, and a release
// older than the CPU (Debian 12's 0.3.21 on Emerald Rapids) falls back to its Prescott (SSE3) kernels,
// about 8x slower; so the load sets OPENBLAS_CORETYPE from our own feature detection (SkylakeX with
// AVX-512, Haswell with AVX2 + FMA) and OPENBLAS_NUM_THREADS=1, each only when the user has not set
// it, and removes them again right after dlopen (the load happens once, at the first openblas_info()).
// setenv/unsetenv are not thread-safe against a getenv on another thread, so that first call must be
// made where no other thread reads the environment: the addon makes it on the JS thread when it reads
// a preserved spec (native/binding/preserve.cc blas_choice_of), the plain C++ tests on their main thread.
//
// Determinism: OpenBLAS is set to one thread when loaded (openblas_set_num_threads(1)) and every
// call runs on one of our pool's threads, on fixed shapes (row tiles of the GEMM fixed by the group's size,
// fixed column chunks of the solve), so the bytes never depend on our thread count. OpenBLAS's pthread
// builds (USE_THREAD=1) serialise their buffer allocation with a lock and are safe for concurrent
// callers; with one thread each call runs in the caller. The bytes differ from Eigen's (another
// summation order; both within SPEC §5), so the provider is recorded with every preserved result.
//
// Choice: GEOEDIT_BLAS = auto (default: OpenBLAS when it loads, else Eigen) | eigen | openblas
// (an error, naming why, when it cannot be loaded), read once; tests and the bench pick per operator
// (PreserveBuildOptions::blas).
#pragma once
#include <cstdint>
#include <string>

namespace geoedit {

enum class BlasChoice : int8_t { Default = -1, Eigen = 0, OpenBlas = 1, Auto = 2 };

struct OpenBlasInfo {
  bool available = false;
  std::string reason;    // why not (when !available)
  std::string lib;       // the file dlopen'ed
  std::string config;    // openblas_get_config(): "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64"
  std::string core;      // openblas_get_corename(): the kernel set picked for this CPU ("SkylakeX")
  std::string version;   // "0.3.21" (from config)
  std::string provider;  // "openblas-0.3.21-SkylakeX": recorded with each preserved result
  bool ilp64 = false;    // libopenblas64_ (64-bit integers)
};

// Loads once (thread-safe, but see above: the first call sets environment variables); never throws.
const OpenBlasInfo& openblas_info();

// GEOEDIT_BLAS, read once: Auto unless set to eigen / openblas. An unknown value is an error
// (ERR_INVALID_OPTION naming the variable) when an operator is built.
BlasChoice blas_choice_from_env();

// The provider an operator built with `c` uses: Eigen or OpenBlas (Default = the environment's).
// Throws ERR_UNSUPPORTED when OpenBLAS is asked for and cannot be loaded.
BlasChoice resolve_blas(BlasChoice c);

// Process-wide default for BlasChoice::Default (tests: run one suite per provider). Default = back to
// the environment's.
void set_default_blas(BlasChoice c);

// The entry points (OpenBLAS loaded; the caller checked openblas_info().available). One thread each.
// Y[rows, nout] = X[rows, kd]·P[kd, nout], f32 row-major with leading dimensions.
void openblas_sgemm(const float* X, int64_t rows, int64_t kd, int64_t ldx, const float* P, int64_t ldp, int64_t nout,
                    float* Y, int64_t ldy);
// In-place Cholesky of S (d×d f64 column-major; the lower triangle is read and replaced by L), blocked
// on `threads` threads of the pool in fixed panels and tiles (the same bytes for any thread count).
// Returns false when S is not numerically positive definite.
bool openblas_cholesky(double* S, int64_t d, int threads);
// Solves L L^T X = B in place for columns [c0, c1) of B (d×d column-major), L from openblas_cholesky.
void openblas_solve_cols(const double* L, int64_t d, double* B, int64_t c0, int64_t c1);

}  // namespace geoedit
