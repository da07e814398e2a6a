// What this build and machine offer, and small helpers: info(), defaults(), convert(), cudaProbe().
#include <cstdlib>

#include "../cpu/preserve_la.h"
#include "common.h"
#include "core/blas.h"

namespace geoedit_binding {

namespace {

// info() -> { version, simd, simdDetected, threads, simdSupported }
Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", geoedit::version());
  o.Set("simd", geoedit::simd_name(geoedit::active_simd()));
  o.Set("simdDetected", geoedit::simd_name(geoedit::detect_simd()));
  o.Set("threads", geoedit::hardware_threads());
  Napi::Array sup = Napi::Array::New(env);
  uint32_t k = 0;
  for (int s = 0; s <= 2; ++s)
    if (geoedit::cpu_supports(geoedit::SimdLevel(s))) sup.Set(k++, geoedit::simd_name(geoedit::SimdLevel(s)));
  o.Set("simdSupported", sup);
  return o;
}

// blasInfo() -> { choice: 'auto' | 'eigen' | 'openblas' | <an unknown GEOEDIT_BLAS value>, provider (who a
//   preserved edit's ridge rows use now: 'openblas-<version>-<core>' | 'eigen-<isa>'; null when GEOEDIT_BLAS cannot
//   be honoured), error (why, or null), openblas: { available, reason, lib, config, core, version, provider } }.
// Separate from info() because it may load libopenblas (core/blas.h), here on the JS thread, as the first
// preserved call does when it reads its spec (native/binding/preserve.cc blas_choice_of).
Napi::Value BlasInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const geoedit::OpenBlasInfo& ob = geoedit::openblas_info();
  Napi::Object b = Napi::Object::New(env);
  const geoedit::BlasChoice env_choice = geoedit::blas_choice_from_env();
  const char* ev = std::getenv("GEOEDIT_BLAS");
  b.Set("choice", env_choice == geoedit::BlasChoice::Eigen ? "eigen" : env_choice == geoedit::BlasChoice::OpenBlas ? "openblas"
                  : env_choice == geoedit::BlasChoice::Auto ? "auto" : (ev ? ev : ""));
  try {
    const geoedit::BlasChoice c = geoedit::resolve_blas(geoedit::BlasChoice::Default);
    b.Set("provider", c == geoedit::BlasChoice::OpenBlas ? ob.provider
                                                         : std::string("eigen-") + geoedit::preserve_la_for(geoedit::active_simd()).name);
    b.Set("error", env.Null());
  } catch (const geoedit::Error& e) {
    b.Set("provider", env.Null());
    b.Set("error", e.what());
  }
  Napi::Object obo = Napi::Object::New(env);
  obo.Set("available", ob.available);
  obo.Set("reason", ob.reason);
  obo.Set("lib", ob.lib);
  obo.Set("config", ob.config);
  obo.Set("core", ob.core);
  obo.Set("version", ob.version);
  obo.Set("provider", ob.provider);
  b.Set("openblas", obo);
  return b;
}

// defaults() -> the SPEC §3 defaults of geoedit::Params, the paper preset as `paper`, and the
// preservation defaults (core/preserve.h) as `preserve: { rho, mu }`.
Napi::Value Defaults(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  geoedit::Params p;
  Napi::Object o = Napi::Object::New(env);
  o.Set("scale", p.scale);
  o.Set("kappa", p.kappa);
  o.Set("keepOrthogonal", p.keep_orthogonal);
  o.Set("fuseAligned", p.fuse_aligned);
  o.Set("forgetConflicting", p.forget_conflicting);
  o.Set("lambda", p.lambda);
  o.Set("density", p.density);
  o.Set("temperature", p.temperature);
  geoedit::Params paper;
  geoedit::apply_paper_preset(&paper);
  Napi::Object pp = Napi::Object::New(env);
  pp.Set("kappa", paper.kappa);
  pp.Set("keepOrthogonal", paper.keep_orthogonal);
  pp.Set("fuseAligned", paper.fuse_aligned);
  pp.Set("forgetConflicting", paper.forget_conflicting);
  o.Set("paper", pp);
  // SPEC §3 step 0's rho and mu when a preserve spec gives none (core/preserve.h).
  Napi::Object pr = Napi::Object::New(env);
  pr.Set("rho", geoedit::kPreserveDefaultRho);
  pr.Set("mu", geoedit::kPreserveDefaultMu);
  o.Set("preserve", pr);
  return o;
}

// convert(fromDtype, src TypedArray, toDtype) -> TypedArray (Float32Array or Uint16Array)
Napi::Value Convert(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[1].IsTypedArray()) throw_type(env, "convert(from, data, to)");
  DType from, to;
  if (!geoedit::parse_dtype(info[0].ToString().Utf8Value(), &from) || !geoedit::parse_dtype(info[2].ToString().Utf8Value(), &to))
    throw make_error(env, "ERR_UNKNOWN_DTYPE", "Expected 'f32', 'f16' or 'bf16'");
  char* src;
  size_t bytes;
  typed_bytes(info[1].As<Napi::TypedArray>(), "data", &src, &bytes);
  const size_t count = bytes / geoedit::dtype_size(from);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, count * geoedit::dtype_size(to));
  call_sync(env, "converting", [&]() { geoedit::convert(from, src, to, ab.Data(), count); });
  if (to == DType::F32) return Napi::Float32Array::New(env, count, ab, 0);
  return Napi::Uint16Array::New(env, count, ab, 0);
}

std::string version_string(int v) {
  if (v <= 0) return "";
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// cudaProbe(refresh?) -> { available, reason, kind, pluginPath, tried, device | null, versions? }
Napi::Value CudaProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool refresh = info.Length() > 0 && info[0].ToBoolean().Value();
  const geoedit::CudaStatus st = call_sync(env, "probing CUDA", [&]() { return geoedit::cuda_status(refresh); });
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", st.available);
  o.Set("reason", st.reason);
  o.Set("kind", st.kind);
  o.Set("pluginPath", st.plugin_path);
  Napi::Array tried = Napi::Array::New(env, st.tried.size());
  for (size_t i = 0; i < st.tried.size(); ++i) tried.Set(uint32_t(i), st.tried[i]);
  o.Set("tried", tried);
  if (!st.device.name.empty()) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", st.device.name);
    d.Set("memory", double(st.device.total_memory));
    d.Set("computeCapability", std::to_string(st.device.cc_major) + "." + std::to_string(st.device.cc_minor));
    d.Set("driverVersion", version_string(st.device.driver_version));
    d.Set("runtimeVersion", version_string(st.device.runtime_version));
    d.Set("multiprocessors", st.device.multiprocessors);
    d.Set("deviceCount", st.device.device_count);
    d.Set("index", st.device.device_index);
    o.Set("device", d);
  } else {
    o.Set("device", env.Null());
    if (st.device.driver_version || st.device.runtime_version) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("driverVersion", version_string(st.device.driver_version));
      d.Set("runtimeVersion", version_string(st.device.runtime_version));
      o.Set("versions", d);
    }
  }
  return o;
}

}  // namespace

void register_probe(Napi::Env env, Napi::Object exports) {
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("blasInfo", Napi::Function::New(env, BlasInfo, "blasInfo"));
  exports.Set("defaults", Napi::Function::New(env, Defaults, "defaults"));
  exports.Set("convert", Napi::Function::New(env, Convert, "convert"));
  exports.Set("cudaProbe", Napi::Function::New(env, CudaProbe, "cudaProbe"));
}

}  // namespace geoedit_binding
