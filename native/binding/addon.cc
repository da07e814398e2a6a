// The only file that includes napi.h. Reads every argument into a plain C++ job on the JS
// thread (the "baton"), runs the core off the event loop, and hands back JS-owned arrays.
#include <napi.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "geoedit/cuda.h"
#include "geoedit/geoedit.h"

namespace {

using geoedit::DType;
using geoedit::Error;
using geoedit::ErrorCode;

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

[[noreturn]] void throw_type(Napi::Env env, const std::string& msg) {
  Napi::TypeError e = Napi::TypeError::New(env, msg);
  e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw e;
}

struct Keep {
  // Holds JS objects alive while native code uses their memory.
  std::vector<Napi::ObjectReference> refs;
  void hold(Napi::Object o) { refs.push_back(Napi::Persistent(o)); }
};

double num(Napi::Object o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) throw_type(o.Env(), std::string("Expected a number for ") + key);
  return v.As<Napi::Number>().DoubleValue();
}

DType dtype_of(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
  DType d;
  if (!geoedit::parse_dtype(s, &d))
    throw make_error(o.Env(), "ERR_UNKNOWN_DTYPE", std::string("Expected 'f32', 'f16' or 'bf16' for ") + key + " but received '" + s + "'");
  return d;
}

// A typed array's data pointer, checked to hold at least `bytes` bytes.
const void* data_of(Napi::Object spec, const char* key, size_t bytes, Keep& keep, bool optional = false) {
  Napi::Value v = spec.Get(key);
  if (optional && (v.IsUndefined() || v.IsNull())) return nullptr;
  if (!v.IsTypedArray()) throw_type(spec.Env(), std::string("Expected a typed array for ") + key);
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  if (ta.ByteLength() < bytes)
    throw make_error(spec.Env(), "ERR_DATA_LENGTH", std::string(key) + " holds " + std::to_string(ta.ByteLength()) +
                                                        " bytes but " + std::to_string(bytes) + " are needed");
  keep.hold(ta);
  return static_cast<const char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
}

struct Baton {
  geoedit::EditJob job;
  geoedit::Params params;
  geoedit::RunOptions ro;
  Keep keep;
  bool cuda = false;               // backend 'cuda' (chosen in lib/backend.ts)
  geoedit::CudaRunOptions cuda_opts;
  Napi::ObjectReference result;  // { out?, cos, region, coefNew, coefOld, deltaSq, na, nb }
  std::string err_code, err_msg;
};

template <typename T>
T* alloc_array(Napi::Env env, Napi::Object result, const char* key, size_t count) {
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, count * sizeof(T));
  Napi::Value ta;
  if constexpr (std::is_same<T, double>::value) ta = Napi::Float64Array::New(env, count, ab, 0);
  else if constexpr (std::is_same<T, float>::value) ta = Napi::Float32Array::New(env, count, ab, 0);
  else if constexpr (std::is_same<T, uint16_t>::value) ta = Napi::Uint16Array::New(env, count, ab, 0);
  else ta = Napi::Uint8Array::New(env, count, ab, 0);
  result.Set(key, ta);
  return static_cast<T*>(ab.Data());
}

std::unique_ptr<Baton> read_spec(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "Expected an edit specification object");
  Napi::Object spec = info[0].As<Napi::Object>();
  auto b = std::make_unique<Baton>();
  geoedit::EditJob& job = b->job;
  const double rows = num(spec, "rows", -1), cols = num(spec, "cols", -1);
  if (!(rows >= 0) || !(cols >= 0) || rows != std::floor(rows) || cols != std::floor(cols) || rows * cols > 9.0e15)
    throw make_error(env, "ERR_INVALID_OPTION", "rows and cols must be non-negative integers");
  job.rows = int64_t(rows);
  job.cols = int64_t(cols);
  const size_t count = size_t(job.rows) * size_t(job.cols);
  job.base.dtype = dtype_of(spec, "baseDtype");
  job.old_.dtype = dtype_of(spec, "oldDtype");
  job.new_.dtype = dtype_of(spec, "newDtype");
  job.base.data = data_of(spec, "base", count * geoedit::dtype_size(job.base.dtype), b->keep);
  job.old_.data = data_of(spec, "old", count * geoedit::dtype_size(job.old_.dtype), b->keep);
  job.new_.data = data_of(spec, "new", count * geoedit::dtype_size(job.new_.dtype), b->keep);
  if (!spec.Get("impOld").IsUndefined()) {
    job.imp_old.dtype = dtype_of(spec, "impOldDtype");
    job.imp_new.dtype = dtype_of(spec, "impNewDtype");
    job.imp_old.data = data_of(spec, "impOld", count * geoedit::dtype_size(job.imp_old.dtype), b->keep);
    job.imp_new.data = data_of(spec, "impNew", count * geoedit::dtype_size(job.imp_new.dtype), b->keep);
  }
  job.c_new = static_cast<const float*>(data_of(spec, "cNew", size_t(job.rows) * 4, b->keep, true));
  job.c_old = static_cast<const float*>(data_of(spec, "cOld", size_t(job.rows) * 4, b->keep, true));
  job.out_dtype = dtype_of(spec, "outDtype");
  Napi::Value tn = spec.Get("tensorName");
  if (tn.IsString()) job.tensor_name = tn.As<Napi::String>().Utf8Value();
  job.row_offset = int64_t(num(spec, "rowOffset", 0));

  Napi::Value pv = spec.Get("params");
  if (!pv.IsObject()) throw_type(env, "Expected params object");
  Napi::Object p = pv.As<Napi::Object>();
  geoedit::Params& P = b->params;
  Napi::Value st = p.Get("strategy");
  std::string sname = st.IsString() ? st.As<Napi::String>().Utf8Value() : "geoedit";
  if (!geoedit::parse_strategy(sname, &P.strategy))
    throw make_error(env, "ERR_UNKNOWN_STRATEGY", "Unknown strategy '" + sname + "'");
  P.scale = num(p, "scale", P.scale);
  P.kappa = num(p, "kappa", P.kappa);
  P.band_degrees = num(p, "bandDegrees", -1);
  P.keep_orthogonal = num(p, "keepOrthogonal", P.keep_orthogonal);
  P.fuse_aligned = num(p, "fuseAligned", P.fuse_aligned);
  P.forget_conflicting = num(p, "forgetConflicting", P.forget_conflicting);
  P.lambda = num(p, "lambda", P.lambda);
  P.density = num(p, "density", P.density);
  P.temperature = num(p, "temperature", P.temperature);
  P.allow_non_finite = p.Get("allowNonFinite").ToBoolean().Value();
  {
    Napi::Value be = spec.Get("backend");
    b->cuda = be.IsString() && be.As<Napi::String>().Utf8Value() == "cuda";
    b->cuda_opts.memory_limit = uint64_t(num(spec, "cudaMemoryLimit", 0));
  }
  b->ro.threads = int(num(spec, "threads", 0));
  b->ro.simd = int(num(spec, "simd", -1));
  if (b->ro.simd > 2) b->ro.simd = 2;
  try {
    geoedit::validate_params(P);
  } catch (const Error& e) {
    throw make_error(env, geoedit::error_code_name(e.code()), e.what());
  }

  // Outputs: JS-owned arrays allocated here, written by the worker.
  Napi::Object result = Napi::Object::New(env);
  const bool want_out = spec.Get("wantOut").ToBoolean().Value();
  if (want_out) {
    if (job.out_dtype == DType::F32) job.out = alloc_array<float>(env, result, "out", count);
    else job.out = alloc_array<uint16_t>(env, result, "out", count);
  }
  const size_t r = size_t(job.rows);
  job.cos = alloc_array<double>(env, result, "cos", r);
  job.region = alloc_array<uint8_t>(env, result, "region", r);
  job.coef_new = alloc_array<float>(env, result, "coefNew", r);
  job.coef_old = alloc_array<float>(env, result, "coefOld", r);
  job.delta_sq = alloc_array<double>(env, result, "deltaSq", r);
  job.na = alloc_array<double>(env, result, "na", r);
  job.nb = alloc_array<double>(env, result, "nb", r);
  b->result = Napi::Persistent(result);
  return b;
}

void run_baton(Baton& b) {
  try {
    if (b.cuda) geoedit::run_edit_cuda(b.job, b.params, b.cuda_opts);
    else geoedit::run_edit(b.job, b.params, b.ro);
  } catch (const Error& e) {
    b.err_code = geoedit::error_code_name(e.code());
    b.err_msg = e.what();
  } catch (const std::bad_alloc&) {
    b.err_code = "ERR_OUT_OF_MEMORY";
    b.err_msg = "out of memory while editing";
  } catch (const std::exception& e) {
    b.err_code = "ERR_INTERNAL";
    b.err_msg = std::string("internal error: ") + e.what();
  } catch (...) {
    b.err_code = "ERR_INTERNAL";
    b.err_msg = "internal error: unknown exception";
  }
}

Napi::Value EditSync(const Napi::CallbackInfo& info) {
  auto b = read_spec(info);
  run_baton(*b);
  if (!b->err_code.empty()) throw make_error(info.Env(), b->err_code, b->err_msg);
  return b->result.Value();
}

class EditWorker : public Napi::AsyncWorker {
 public:
  EditWorker(Napi::Env env, std::unique_ptr<Baton> b)
      : Napi::AsyncWorker(env, "geoedit:edit"), baton_(std::move(b)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    run_baton(*baton_);
    if (!baton_->err_code.empty()) SetError(baton_->err_msg);
  }
  void OnOK() override { deferred_.Resolve(baton_->result.Value()); }
  void OnError(const Napi::Error& e) override {
    Napi::HandleScope scope(Env());
    deferred_.Reject(make_error(Env(), baton_->err_code.empty() ? "ERR_INTERNAL" : baton_->err_code, e.Message()).Value());
  }

 private:
  std::unique_ptr<Baton> baton_;
  Napi::Promise::Deferred deferred_;
};

Napi::Value Edit(const Napi::CallbackInfo& info) {
  auto b = read_spec(info);
  auto* w = new EditWorker(info.Env(), std::move(b));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

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

Napi::Value SetSimd(const Napi::CallbackInfo& info) {
  std::string s = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  geoedit::SimdLevel l;
  if (s == "scalar") l = geoedit::SimdLevel::Scalar;
  else if (s == "avx2") l = geoedit::SimdLevel::AVX2;
  else if (s == "avx512") l = geoedit::SimdLevel::AVX512;
  else throw make_error(info.Env(), "ERR_INVALID_OPTION", "Expected 'scalar', 'avx2' or 'avx512' but received '" + s + "'");
  return Napi::Boolean::New(info.Env(), geoedit::set_simd(l));
}

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
  return o;
}

// convert(fromDtype, src TypedArray, toDtype) -> TypedArray (Float32Array or Uint16Array)
Napi::Value Convert(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[1].IsTypedArray()) throw_type(env, "convert(from, data, to)");
  DType from, to;
  if (!geoedit::parse_dtype(info[0].ToString().Utf8Value(), &from) || !geoedit::parse_dtype(info[2].ToString().Utf8Value(), &to))
    throw make_error(env, "ERR_UNKNOWN_DTYPE", "Expected 'f32', 'f16' or 'bf16'");
  Napi::TypedArray src = info[1].As<Napi::TypedArray>();
  const size_t count = src.ByteLength() / geoedit::dtype_size(from);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, count * geoedit::dtype_size(to));
  geoedit::convert(from, static_cast<const char*>(src.ArrayBuffer().Data()) + src.ByteOffset(), to, ab.Data(), count);
  if (to == DType::F32) return Napi::Float32Array::New(env, count, ab, 0);
  return Napi::Uint16Array::New(env, count, ab, 0);
}

class TriadWorker : public Napi::AsyncWorker {
 public:
  TriadWorker(Napi::Env env, size_t n, int threads, int reps)
      : Napi::AsyncWorker(env, "geoedit:triad"), n_(n), threads_(threads), reps_(reps), d_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return d_.Promise(); }
  void Execute() override { gbps_ = geoedit::triad_gbps(n_, threads_, reps_); }
  void OnOK() override { d_.Resolve(Napi::Number::New(Env(), gbps_)); }
  void OnError(const Napi::Error& e) override { d_.Reject(e.Value()); }

 private:
  size_t n_;
  int threads_, reps_;
  double gbps_ = 0;
  Napi::Promise::Deferred d_;
};

Napi::Value Triad(const Napi::CallbackInfo& info) {
  const size_t n = size_t(info[0].As<Napi::Number>().DoubleValue());
  auto* w = new TriadWorker(info.Env(), n, info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value());
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// ---- CUDA backend (docs/cuda.md) -----------------------------------------------------------
std::string version_string(int v) {
  if (v <= 0) return "";
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// cudaProbe(refresh?) -> { available, reason, kind, pluginPath, tried, device | null }
Napi::Value CudaProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool refresh = info.Length() > 0 && info[0].ToBoolean().Value();
  const geoedit::CudaStatus st = geoedit::cuda_status(refresh);
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
    Napi::Object d = Napi::Object::New(env);
    o.Set("device", env.Null());
    if (st.device.driver_version || st.device.runtime_version) {
      d.Set("driverVersion", version_string(st.device.driver_version));
      d.Set("runtimeVersion", version_string(st.device.runtime_version));
      o.Set("versions", d);
    }
  }
  return o;
}

// loraGeometry({ m, n, rOld, rNew, aOld, bOld, aNew, bNew, sOld, sNew, backend }) -> { dot, na, nb }
Napi::Value LoraGeometry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "Expected a LoRA geometry specification object");
  Napi::Object spec = info[0].As<Napi::Object>();
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
  Napi::Value be = spec.Get("backend");
  const bool cuda = be.IsString() && be.As<Napi::String>().Utf8Value() == "cuda";
  try {
    if (cuda) geoedit::lora_geometry_cuda(j);
    else geoedit::lora_geometry_cpu(j);
  } catch (const Error& e) {
    throw make_error(env, geoedit::error_code_name(e.code()), e.what());
  }
  return result;
}

// cudaBench({ rows, cols, dtype, reps, params, withImportance }) -> { kernelMs, kernelGBps, copyGBps, checksum }
// Synchronous: for bench/gpu/ only (device-resident data, no host transfers).
Napi::Value CudaBench(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "Expected a bench specification object");
  Napi::Object spec = info[0].As<Napi::Object>();
  geoedit::Params P;
  Napi::Value pv = spec.Get("params");
  if (pv.IsObject()) {
    Napi::Object p = pv.As<Napi::Object>();
    Napi::Value st = p.Get("strategy");
    std::string sname = st.IsString() ? st.As<Napi::String>().Utf8Value() : "geoedit";
    if (!geoedit::parse_strategy(sname, &P.strategy))
      throw make_error(env, "ERR_UNKNOWN_STRATEGY", "Unknown strategy '" + sname + "'");
    P.scale = num(p, "scale", P.scale);
    P.kappa = num(p, "kappa", P.kappa);
    P.band_degrees = num(p, "bandDegrees", -1);
    P.keep_orthogonal = num(p, "keepOrthogonal", P.keep_orthogonal);
    P.fuse_aligned = num(p, "fuseAligned", P.fuse_aligned);
    P.forget_conflicting = num(p, "forgetConflicting", P.forget_conflicting);
    P.lambda = num(p, "lambda", P.lambda);
    P.density = num(p, "density", P.density);
    P.temperature = num(p, "temperature", P.temperature);
  }
  const DType dt = dtype_of(spec, "dtype");
  try {
    const geoedit::CudaBenchResult r = geoedit::cuda_bench(int64_t(num(spec, "rows", 0)), int64_t(num(spec, "cols", 0)), dt,
                                                           int(num(spec, "reps", 20)), P, spec.Get("withImportance").ToBoolean().Value());
    Napi::Object o = Napi::Object::New(env);
    o.Set("kernelMs", r.kernel_ms);
    o.Set("kernelGBps", r.kernel_gbps);
    o.Set("copyGBps", r.copy_gbps);
    o.Set("checksum", r.checksum);
    return o;
  } catch (const Error& e) {
    throw make_error(env, geoedit::error_code_name(e.code()), e.what());
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaProbe", Napi::Function::New(env, CudaProbe, "cudaProbe"));
  exports.Set("loraGeometry", Napi::Function::New(env, LoraGeometry, "loraGeometry"));
  exports.Set("cudaBench", Napi::Function::New(env, CudaBench, "cudaBench"));
  exports.Set("edit", Napi::Function::New(env, Edit, "edit"));
  exports.Set("editSync", Napi::Function::New(env, EditSync, "editSync"));
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("setSimd", Napi::Function::New(env, SetSimd, "setSimd"));
  exports.Set("defaults", Napi::Function::New(env, Defaults, "defaults"));
  exports.Set("convert", Napi::Function::New(env, Convert, "convert"));
  exports.Set("triad", Napi::Function::New(env, Triad, "triad"));
  return exports;
}

}  // namespace

NODE_API_MODULE(geoedit, Init)
