// Exports for tests and benchmarks only (the `_` prefix: not used by lib/ in production).
//   _triad(n, threads, reps) -> Promise<number>            STREAM triad GB/s over the shared pool (bench/run.js)
//   _cudaBench(spec) -> { kernelMs, kernelGBps, copyGBps, checksum }   device-resident kernel bench (bench/gpu/)
//   _cudaLoraGeometry(spec) -> { dot, na, nb }              SPEC §4 LoRA sums on the CPU or the plugin (lib/lora-geometry.ts)
//   _outputPool() -> { hits, misses, idleBytes, cap, early, reclaimed, forced, futile, gcMs, faultMsPerMiB, uncounted, marking, uncountedAvailable, uncountedUnavailable } the fresh-output pool's counters (outpool.cc)
//   _directWrites() -> { direct, buffered, refused }          the stream writer's O_DIRECT counters (core/directwrite.h)
//   _setFused(on) -> previous                              the fused row path on/off (A/B benchmarks)
#include "common.h"
#include "outpool.h"

#include "core/directwrite.h"

namespace geoedit_binding {

namespace {

Napi::Value Triad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber())
    throw_type(env, "Expected _triad(n, threads, reps)");
  struct Baton {
    size_t n = 0;
    int threads = 0, reps = 0;
    double gbps = 0;
  };
  auto b = std::make_shared<Baton>();
  b->n = size_t(info[0].As<Napi::Number>().DoubleValue());
  b->threads = info[1].As<Napi::Number>().Int32Value();
  b->reps = info[2].As<Napi::Number>().Int32Value();
  return PromiseWorker::queue(
      env, "geoedit:triad", "running the triad", [b]() { b->gbps = geoedit::triad_gbps(b->n, b->threads, b->reps); }, b,
      Napi::Object::New(env), [b](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, b->gbps); });
}

// _cudaBench({ rows, cols, dtype, reps, params, withImportance }): synchronous, for bench/gpu/ only.
Napi::Value CudaBench(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object spec = spec_arg(info, "a bench specification object");
  geoedit::Params P;
  Napi::Value pv = spec.Get("params");
  if (pv.IsObject()) read_params(env, pv.As<Napi::Object>(), P);
  const DType dt = dtype_of(spec, "dtype");
  const int64_t rows = int64_t(num(spec, "rows", 0)), cols = int64_t(num(spec, "cols", 0));
  const int reps = int(num(spec, "reps", 20));
  const bool imp = spec.Get("withImportance").ToBoolean().Value();
  const geoedit::CudaBenchResult r =
      call_sync(env, "benchmarking CUDA", [&]() { return geoedit::cuda_bench(rows, cols, dt, reps, P, imp); });
  Napi::Object o = Napi::Object::New(env);
  o.Set("kernelMs", r.kernel_ms);
  o.Set("kernelGBps", r.kernel_gbps);
  o.Set("copyGBps", r.copy_gbps);
  o.Set("checksum", r.checksum);
  return o;
}

// _cudaLoraGeometry({ m, n, rOld, rNew, aOld, bOld, aNew, bNew, sOld, sNew, backend }): synchronous.
Napi::Value CudaLoraGeometry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object spec = spec_arg(info, "a CUDA LoRA geometry specification object");
  Keep keep;
  geoedit::LoraGeometryJob j;
  j.m = int64_t(num(spec, "m", 0));
  j.n = int64_t(num(spec, "n", 0));
  j.r_old = int64_t(num(spec, "rOld", 0));
  j.r_new = int64_t(num(spec, "rNew", 0));
  if (j.m < 0 || j.n < 0 || j.r_old < 0 || j.r_new < 0)
    throw make_error(env, "ERR_INVALID_OPTION", "m, n, rOld and rNew must be >= 0");
  j.a_old = static_cast<const float*>(data_of(spec, "aOld", size_t(j.r_old * j.n) * 4, keep));
  j.b_old = static_cast<const float*>(data_of(spec, "bOld", size_t(j.m * j.r_old) * 4, keep));
  j.a_new = static_cast<const float*>(data_of(spec, "aNew", size_t(j.r_new * j.n) * 4, keep));
  j.b_new = static_cast<const float*>(data_of(spec, "bNew", size_t(j.m * j.r_new) * 4, keep));
  j.s_old = num(spec, "sOld", 1);
  j.s_new = num(spec, "sNew", 1);
  Napi::Object result = Napi::Object::New(env);
  j.dot = alloc_array<double>(env, result, "dot", size_t(j.m));
  j.na = alloc_array<double>(env, result, "na", size_t(j.m));
  j.nb = alloc_array<double>(env, result, "nb", size_t(j.m));
  const bool cuda = str(spec, "backend") == "cuda";
  call_sync(env, "in the LoRA path", [&]() {
    if (cuda) geoedit::lora_geometry_cuda(j);
    else geoedit::lora_geometry_cpu(j);
  });
  return result;
}

}  // namespace

// _outputPool() -> { hits, misses, idleBytes, cap, early, reclaimed, forced, futile, gcMs, faultMsPerMiB, uncounted, marking, uncountedAvailable, uncountedUnavailable }: the fresh-output pool's counters (outpool.cc).
static Napi::Value OutputPool(const Napi::CallbackInfo& info) {
  const OutputPoolStats st = output_pool_stats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("hits", double(st.hits));
  o.Set("misses", double(st.misses));
  o.Set("idleBytes", double(st.idle_bytes));
  o.Set("cap", double(st.cap));
  o.Set("early", double(st.early));
  o.Set("reclaimed", double(st.reclaimed));
  o.Set("forced", double(st.forced));
  o.Set("futile", double(st.futile));
  o.Set("gcMs", st.gc_ms);
  o.Set("faultMsPerMiB", st.fault_ms_per_mib);
  o.Set("uncounted", double(st.uncounted));
  o.Set("marking", double(st.marking));
  const char* why = output_pool_uncounted_unavailable(info.Env());
  o.Set("uncountedAvailable", !*why);
  o.Set("uncountedUnavailable", why);
  return o;
}

// _directWrites() -> { direct, buffered, refused }: bytes the stream's writer wrote with O_DIRECT and
// through the page cache, and O_DIRECT opens or writes refused, since the process started (directwrite.h).
static Napi::Value DirectWritesStats(const Napi::CallbackInfo& info) {
  const geoedit::DirectWrites::Stats st = geoedit::DirectWrites::stats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("direct", double(st.direct));
  o.Set("buffered", double(st.buffered));
  o.Set("refused", double(st.refused));
  return o;
}

// _setFused(on) -> previous: the core's fused row path on or off (an A/B switch: same results).
static Napi::Value SetFused(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsBoolean()) throw_type(info.Env(), "Expected _setFused(boolean)");
  const bool was = geoedit::fused_rows();
  geoedit::set_fused_rows(info[0].As<Napi::Boolean>().Value());
  return Napi::Boolean::New(info.Env(), was);
}

// _setRowPipeline(mode?) -> previous: the row pipeline's form ('sums' | 'prefetch' | 'off', geoedit.h RowPipeline)
// for the rest of the process; no argument only reads it. An A/B switch: same results.
static Napi::Value SetRowPipeline(const Napi::CallbackInfo& info) {
  const geoedit::RowPipeline was = geoedit::row_pipeline();
  if (info.Length() >= 1 && !info[0].IsUndefined()) {
    const std::string m = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : std::string();
    if (m == "sums") geoedit::set_row_pipeline(geoedit::RowPipeline::Sums);
    else if (m == "prefetch") geoedit::set_row_pipeline(geoedit::RowPipeline::Prefetch);
    else if (m == "off") geoedit::set_row_pipeline(geoedit::RowPipeline::Off);
    else throw_type(info.Env(), "Expected _setRowPipeline('sums' | 'prefetch' | 'off')");
  }
  return Napi::String::New(info.Env(), geoedit::row_pipeline_name(was));
}

void register_testing(Napi::Env env, Napi::Object exports) {
  exports.Set("_setRowPipeline", Napi::Function::New(env, SetRowPipeline, "_setRowPipeline"));
  exports.Set("_setFused", Napi::Function::New(env, SetFused, "_setFused"));
  exports.Set("_directWrites", Napi::Function::New(env, DirectWritesStats, "_directWrites"));
  exports.Set("_outputPool", Napi::Function::New(env, OutputPool, "_outputPool"));
  exports.Set("_triad", Napi::Function::New(env, Triad, "_triad"));
  exports.Set("_cudaBench", Napi::Function::New(env, CudaBench, "_cudaBench"));
  exports.Set("_cudaLoraGeometry", Napi::Function::New(env, CudaLoraGeometry, "_cudaLoraGeometry"));
}

}  // namespace geoedit_binding
