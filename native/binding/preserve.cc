// Preservation statistics (SPEC §3 step 0, native/core/preserve.h) for the edit and stream specs,
// and the test/bench-only _preserveBench.
//   spec.preserve (edit) / spec.preserves[i] (stream):
//     { cov?: Float32Array, covShape?: [d, d], editCov?, editCovShape?,
//       keys?: Float32Array, keysShape?: [N, d], editKeys?, editKeysShape?,
//       basis?: Float32Array, basisShape?: [k, d], rho?, mu?, source?, tensor?, validateOnly?,
//       blas?: 'auto' | 'eigen' | 'openblas' (default GEOEDIT_BLAS, core/blas.h) }
//   The operator is built (validated, factorised) off the JS thread, in the call's worker.
//   preserveProvider: string, who computed the preserved rows (geoedit::preserve_provider).
//   preserveEnergy: Float64Array(10) [oldBefore, oldAfter, newBefore, newAfter, biasOldBefore,
//     biasOldAfter, biasNewBefore, biasNewAfter, rows, gpuRows] (sums of squared task-vector entries;
//     gpuRows: rows projected on the GPU).
#include <time.h>

#include <chrono>
#include <cmath>
#include <random>

#include "../cpu/preserve_la.h"
#include "common.h"
#include "geoedit/cuda.h"
#include "core/blas.h"
#include "core/pool.h"

namespace geoedit_binding {

namespace {

// [r, c] from spec[key] (an array of two non-negative integers).
bool shape2(Napi::Object o, const std::string& key, int64_t* r, int64_t* c) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return false;
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 2)
    throw make_error(o.Env(), "ERR_INVALID_OPTION", "preserve." + key + " must be a shape [rows, cols]");
  Napi::Array a = v.As<Napi::Array>();
  const double x = a.Get(uint32_t(0)).ToNumber().DoubleValue(), y = a.Get(uint32_t(1)).ToNumber().DoubleValue();
  if (!(x >= 0) || !(y >= 0) || x != std::floor(x) || y != std::floor(y) || x * y > 9.0e15)
    throw make_error(o.Env(), "ERR_INVALID_OPTION", "preserve." + key + " must hold non-negative integers");
  *r = int64_t(x);
  *c = int64_t(y);
  return true;
}

// One matrix: data (Float32Array) + shape; a square matrix's shape may be left out (sqrt of the length).
const float* matrix(Napi::Object o, const char* key, bool square, int64_t* r, int64_t* c, Keep& keep) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_type(o.Env(), std::string("Expected a Float32Array for preserve.") + key);
  const size_t len = v.As<Napi::TypedArray>().ElementLength();
  if (!shape2(o, std::string(key) + "Shape", r, c)) {
    if (!square) throw make_error(o.Env(), "ERR_INVALID_OPTION", std::string("preserve.") + key + "Shape is required");
    const int64_t d = int64_t(std::llround(std::sqrt(double(len))));
    if (size_t(d * d) != len)
      throw make_error(o.Env(), "ERR_DATA_LENGTH", std::string("preserve.") + key + " holds " + std::to_string(len) +
                                                       " values, not a square matrix; give " + key + "Shape");
    *r = *c = d;
  }
  if (size_t(*r) * size_t(*c) != len)
    throw make_error(o.Env(), "ERR_DATA_LENGTH", std::string("preserve.") + key + " holds " + std::to_string(len) +
                                                     " values but its shape [" + std::to_string(*r) + ", " +
                                                     std::to_string(*c) + "] needs " + std::to_string(*r * *c));
  return static_cast<const float*>(data_of(o, key, len * 4, keep));
}

}  // namespace

geoedit::BlasChoice blas_choice_of(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  // OpenBLAS is loaded here, on the JS thread, when the first preserved spec that may use it is read
  // (before the job's threads run): its load sets OPENBLAS_CORETYPE / OPENBLAS_NUM_THREADS around dlopen
  // (core/blas.h), and setenv must not run while another thread may read the environment (it did on a
  // worker thread, at a job's first preserved operator). Not at the addon's registration: a process that
  // never preserves does not pay the load (~11 ms here). Without libopenblas this records why and Eigen runs.
  if (v.IsUndefined() || v.IsNull()) {
    if (geoedit::blas_choice_from_env() != geoedit::BlasChoice::Eigen) geoedit::openblas_info();
    return geoedit::BlasChoice::Default;
  }
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string("(not a string)");
  if (s == "eigen") return geoedit::BlasChoice::Eigen;
  if (s == "auto" || s == "openblas") {
    geoedit::openblas_info();
    return s == "auto" ? geoedit::BlasChoice::Auto : geoedit::BlasChoice::OpenBlas;
  }
  geoedit::ErrorDetails d;
  d.option = key;
  throw make_error(o.Env(), "ERR_INVALID_OPTION", std::string("Expected 'auto', 'eigen' or 'openblas' for ") + key + " but received " + s, d);
}

void put_preserve_provider(Napi::Object result, const std::string& provider) {
  if (!provider.empty()) result.Set("preserveProvider", provider);
}

bool read_preserve_spec(Napi::Value v, const std::string& tensor, geoedit::PreserveSpec* out, geoedit::BlasChoice* blas,
                        Keep& keep) {
  if (v.IsUndefined() || v.IsNull()) return false;
  if (!v.IsObject()) throw_type(v.Env(), "Expected an object for preserve");
  Napi::Object o = v.As<Napi::Object>();
  geoedit::PreserveSpec& s = *out;
  s.cov = matrix(o, "cov", true, &s.cov_rows, &s.cov_cols, keep);
  s.edit_cov = matrix(o, "editCov", true, &s.edit_cov_rows, &s.edit_cov_cols, keep);
  s.keys = matrix(o, "keys", false, &s.keys_rows, &s.keys_cols, keep);
  s.edit_keys = matrix(o, "editKeys", false, &s.edit_keys_rows, &s.edit_keys_cols, keep);
  s.basis = matrix(o, "basis", false, &s.basis_rows, &s.basis_cols, keep);
  s.rho = num(o, "rho", geoedit::kPreserveDefaultRho);
  s.mu = num(o, "mu", geoedit::kPreserveDefaultMu);
  s.source = str(o, "source");
  s.tensor = str(o, "tensor", tensor);
  s.validate_only = o.Get("validateOnly").ToBoolean().Value();
  *blas = blas_choice_of(o, "blas");
  return true;
}

double* alloc_preserve_energy(Napi::Env env, Napi::Object result) {
  return alloc_array<double>(env, result, "preserveEnergy", 10);
}

void put_preserve_energy(const geoedit::PreserveStats& st, double* d) {
  const double v[10] = {st.old_before, st.old_after, st.new_before, st.new_after, st.bias_old_before, st.bias_old_after,
                        st.bias_new_before, st.bias_new_after, double(st.rows), double(st.gpu_rows)};
  for (int i = 0; i < 10; ++i) d[i] = v[i];
}

namespace {

// _preserveBench({ n, rows, form?: 'cov' | 'keys' | 'basis', k?, withC1? (keys), threads?, simd?, reps?, peakSeconds?,
//                   blas?: 'auto' | 'eigen' | 'openblas' })
//   -> { buildMs, applyMs, applyCpuMs (process CPU time, all threads), applyGflops, gemmFlops, peakGflops, peakGflops1, threads, simd, la, provider, factoredBy,
//        statBytes, operatorBytes, workBytes }
// Synthetic statistics (a cov with a strong mean direction, or keys with a strong mean: C formed in the
// core, timed with the build) generated here; timings of build_preserve (the f64 factorisation and solve) and of the f32 row GEMM (both sides, as run_edit
// does: 2·rows·d² flops per side for ridge); the FMA peak of the chosen ISA measured in the same call
// on every thread at once (and on one). Synchronous: benchmarks only.
Napi::Value PreserveBench(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object spec = spec_arg(info, "a preserve bench specification object");
  const int64_t n = int64_t(num(spec, "n", 1024)), rows = int64_t(num(spec, "rows", 1024));
  const std::string form = str(spec, "form", "cov");
  const int64_t k = int64_t(num(spec, "k", 64));
  const bool c1 = spec.Get("withC1").ToBoolean().Value();
  const int reps = std::max(1, int(num(spec, "reps", 1)));
  const double peak_s = num(spec, "peakSeconds", 0.3);
  const geoedit::BlasChoice blas = blas_choice_of(spec, "blas");
  geoedit::RunOptions ro = read_run_options(spec);
  int simd = int(num(spec, "simd", -1));
  if (simd > 2) simd = 2;
  const geoedit::SimdLevel level = simd >= 0 ? geoedit::SimdLevel(simd) : geoedit::active_simd();
  const int threads = ro.threads > 0 ? std::min(ro.threads, geoedit::pool_threads()) : geoedit::pool_threads();
  Napi::Object o = Napi::Object::New(env);
  call_sync(env, "benchmarking preservation", [&]() {
    if (n < 1 || rows < 1 || n > 65536) throw geoedit::Error(geoedit::ErrorCode::InvalidArgument, "n and rows must be in range");
    std::mt19937 g(7);
    std::normal_distribution<float> nd(0.f, 1.f);
    const int64_t N = form == "keys" ? std::max<int64_t>(n + n / 2, 256) : 0;  // full-rank C0
    std::vector<float> K(static_cast<size_t>(N * n)), mean(static_cast<size_t>(n)), U, K1, C;
    for (auto& x : mean) x = 2.0f * nd(g);
    for (int64_t r = 0; r < N; ++r)
      for (int64_t j = 0; j < n; ++j) K[size_t(r * n + j)] = nd(g) + mean[size_t(j)];
    geoedit::PreserveSpec s;
    s.tensor = "bench";
    if (form == "basis") {
      // k orthonormal rows: Gram-Schmidt in f64 of random rows
      std::vector<double> B(size_t(k * n));
      for (auto& x : B) x = nd(g);
      for (int64_t q = 0; q < k; ++q) {
        double* u = B.data() + q * n;
        for (int pass = 0; pass < 2; ++pass)
          for (int64_t p = 0; p < q; ++p) {
            const double* w = B.data() + p * n;
            double t = 0;
            for (int64_t j = 0; j < n; ++j) t += u[j] * w[j];
            for (int64_t j = 0; j < n; ++j) u[j] -= t * w[j];
          }
        double nn = 0;
        for (int64_t j = 0; j < n; ++j) nn += u[j] * u[j];
        for (int64_t j = 0; j < n; ++j) u[j] /= std::sqrt(nn);
      }
      U.assign(B.begin(), B.end());
      s.basis = U.data();
      s.basis_rows = k;
      s.basis_cols = n;
    } else if (form == "keys") {
      s.keys = K.data();
      s.keys_rows = N;
      s.keys_cols = n;
      if (c1) {
        K1.resize(size_t(64 * n));
        for (auto& x : K1) x = nd(g);
        s.edit_keys = K1.data();
        s.edit_keys_rows = 64;
        s.edit_keys_cols = n;
      }
    } else {
      // cov: C0 = s·v·vᵀ + diag(1 + u) (a strong mean direction over an isotropic floor), SPD, O(d²) to form;
      // the build's cost does not depend on the values.
      C.resize(size_t(n) * size_t(n));
      std::uniform_real_distribution<float> ud(0.f, 1.f);
      double vv = 0;
      for (float x : mean) vv += double(x) * x;
      const float sc = float(0.3 * double(n) / vv);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) C[size_t(i * n + j)] = sc * mean[size_t(i)] * mean[size_t(j)];
      for (int64_t i = 0; i < n; ++i) C[size_t(i * n + i)] += 1.0f + ud(g);
      s.cov = C.data();
      s.cov_rows = s.cov_cols = n;
    }
    geoedit::PreserveBuildOptions bo;
    bo.cols = n;
    bo.threads = ro.threads;
    bo.simd = int(level);
    bo.blas = blas;
    auto t0 = std::chrono::steady_clock::now();
    std::shared_ptr<const geoedit::Preserve> P = geoedit::build_preserve(s, bo);
    const double build_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    // Both sides' rows, as run_edit multiplies them: [2·rows, n].
    std::vector<float> X(static_cast<size_t>(2 * rows * n)), Y(X.size());
    for (auto& x : X) x = 0.01f * nd(g);
    // Wall time, and the process's CPU time (all threads): on a shared machine the CPU time counts only
    // the time our threads ran, so flops per CPU-second stays near the unloaded rate.
    auto cpu_ms = [] {
      timespec t;
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
      return double(t.tv_sec) * 1e3 + double(t.tv_nsec) * 1e-6;
    };
    double best = 1e300, best_cpu = 1e300;
    for (int r = 0; r < reps; ++r) {
      auto a = std::chrono::steady_clock::now();
      const double c0 = cpu_ms();
      P->apply_sides(X.data(), X.data() + rows * n, rows, Y.data(), Y.data() + rows * n, ro.threads, int(level));
      best_cpu = std::min(best_cpu, cpu_ms() - c0);
      best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
    }
    const double flops = form == "basis" ? 2.0 * 2.0 * double(2 * rows) * double(n) * double(k)
                                         : 2.0 * double(2 * rows) * double(n) * double(n);
    // The peak: the ISA's FMA loop on every pool thread at once, and on one.
    const geoedit::PreserveLa& la = geoedit::preserve_la_for(level);
    std::vector<double> per(size_t(threads), 0.0);
    geoedit::parallel_for(threads, 1, threads, [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i) per[size_t(i)] = la.fma_peak_gflops(peak_s);
    });
    double peak = 0;
    for (double x : per) peak += x;
    const double peak1 = la.fma_peak_gflops(peak_s);
    double checksum = 0;
    for (size_t i = 0; i < Y.size(); i += 97) checksum += Y[i];
    o.Set("buildMs", build_ms);
    o.Set("applyMs", best);
    o.Set("gemmFlops", flops);
    o.Set("applyGflops", flops / (best * 1e-3) / 1e9);
    o.Set("applyCpuMs", best_cpu);
    o.Set("peakGflops", peak);
    o.Set("peakGflops1", peak1);
    o.Set("threads", threads);
    o.Set("simd", geoedit::simd_name(level));
    o.Set("la", la.name);
    o.Set("provider", geoedit::preserve_provider(*P, level));
    o.Set("factoredBy", P->factored_by);
    o.Set("statBytes", double(P->bytes()));
    // build_preserve's f64 work: two d×d matrices, plus the f32 operator it returns
    o.Set("workBytes", form == "basis" ? double(k * k * 8) : double(2 * 8 + 4) * double(n) * double(n));
    o.Set("checksum", checksum);
  });
  return o;
}

// cudaPreserveStatus(refresh?) -> { available, reason, libs }: whether preserved edits on backend 'cuda'
// project with cuBLAS / factorise with cuSOLVER, or why they run on the CPU.
Napi::Value CudaPreserveStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool refresh = info.Length() > 0 && info[0].ToBoolean().Value();
  const geoedit::CudaPreserveStatus st = call_sync(env, "probing cuBLAS", [&]() { return geoedit::cuda_preserve_status(refresh); });
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", st.available);
  o.Set("reason", st.reason);
  o.Set("libs", st.libs);
  return o;
}

}  // namespace

void register_preserve(Napi::Env env, Napi::Object exports) {
  // OpenBLAS is loaded on the JS thread when a preserved spec is read (blas_choice_of) or info() asks
  // for its provider, not here.
  exports.Set("cudaPreserveStatus", Napi::Function::New(env, CudaPreserveStatus, "cudaPreserveStatus"));
  exports.Set("_preserveBench", Napi::Function::New(env, PreserveBench, "_preserveBench"));
}

}  // namespace geoedit_binding
