// The only file that includes napi.h. Reads every argument into a plain C++ job on the JS
// thread (the "baton"), runs the core off the event loop, and hands back JS-owned arrays.
#include <napi.h>

#include <cmath>
#include <functional>
#include <cstdint>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <memory>
#include <string>
#include <vector>

#include "geoedit/cuda.h"
#include "geoedit/geoedit.h"
#include "core/lora.h"
#include "core/safetensors.h"
#include "core/stream.h"

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

// Large outputs: ask for transparent huge pages, so first-touch page faults (and the kernel's
// zeroing) cost one fault per 2 MiB instead of per 4 KiB. A hint only; failure is harmless.
void advise_huge(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = uintptr_t(2) << 20;
  if (bytes < 4 * huge) return;
  uintptr_t b = (reinterpret_cast<uintptr_t>(p) + huge - 1) & ~(huge - 1);
  uintptr_t e = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(huge - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
#else
  (void)p; (void)bytes;
#endif
}

template <typename T>
T* alloc_array(Napi::Env env, Napi::Object result, const char* key, size_t count) {
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, count * sizeof(T));
  Napi::Value ta;
  if constexpr (std::is_same<T, double>::value) ta = Napi::Float64Array::New(env, count, ab, 0);
  else if constexpr (std::is_same<T, float>::value) ta = Napi::Float32Array::New(env, count, ab, 0);
  else if constexpr (std::is_same<T, uint16_t>::value) ta = Napi::Uint16Array::New(env, count, ab, 0);
  else ta = Napi::Uint8Array::New(env, count, ab, 0);
  result.Set(key, ta);
  advise_huge(ab.Data(), count * sizeof(T));
  return static_cast<T*>(ab.Data());
}

// The per-row statistics every edit returns (an EditJob or a StreamTask: same field names), as
// JS-owned arrays set on `obj`.
template <class J>
void alloc_row_stats(Napi::Env env, Napi::Object obj, size_t rows, J& j) {
  j.cos = alloc_array<double>(env, obj, "cos", rows);
  j.region = alloc_array<uint8_t>(env, obj, "region", rows);
  j.coef_new = alloc_array<float>(env, obj, "coefNew", rows);
  j.coef_old = alloc_array<float>(env, obj, "coefOld", rows);
  j.delta_sq = alloc_array<double>(env, obj, "deltaSq", rows);
  j.na = alloc_array<double>(env, obj, "na", rows);
  j.nb = alloc_array<double>(env, obj, "nb", rows);
}

// Shared readers (defined with the LoRA bindings below): dimensions, and the Params (validated).
void read_dims(Napi::Object spec, int64_t* rows, int64_t* cols);
void read_params_into(Napi::Env env, Napi::Object spec, geoedit::Params& P);
void read_params(Napi::Env env, Napi::Object p, geoedit::Params& P);
void read_backend(Napi::Object spec, bool* cuda, geoedit::CudaRunOptions* opts);

std::unique_ptr<Baton> read_spec(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "Expected an edit specification object");
  Napi::Object spec = info[0].As<Napi::Object>();
  auto b = std::make_unique<Baton>();
  geoedit::EditJob& job = b->job;
  read_dims(spec, &job.rows, &job.cols);
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
  job.tau_given = spec.Get("tauGiven").ToBoolean().Value();

  read_params_into(env, spec, b->params);
  read_backend(spec, &b->cuda, &b->cuda_opts);
  b->ro.threads = int(num(spec, "threads", 0));
  b->ro.simd = int(num(spec, "simd", -1));
  if (b->ro.simd > 2) b->ro.simd = 2;

  // Outputs: JS-owned arrays allocated here, written by the worker.
  Napi::Object result = Napi::Object::New(env);
  const bool want_out = spec.Get("wantOut").ToBoolean().Value();
  if (want_out) {
    Napi::Value od = spec.Get("outData");
    if (od.IsTypedArray()) {
      // A caller-provided output (reused across calls: no fresh pages to fault in and zero).
      job.out = const_cast<void*>(data_of(spec, "outData", count * geoedit::dtype_size(job.out_dtype), b->keep));
      result.Set("out", od);
    } else if (job.out_dtype == DType::F32) {
      job.out = alloc_array<float>(env, result, "out", count);
    } else {
      job.out = alloc_array<uint16_t>(env, result, "out", count);
    }
  }
  alloc_row_stats(env, result, size_t(job.rows), job);
  b->result = Napi::Persistent(result);
  return b;
}

// Runs fn() and records a failure as (code, message): every native call reports errors the same
// way, whichever path (edit, stream, LoRA) it took. `what` names the work for out-of-memory.
template <class F>
void run_guarded(F&& fn, std::string& code, std::string& msg, const char* what) {
  try {
    fn();
  } catch (const Error& e) {
    code = geoedit::error_code_name(e.code());
    msg = e.what();
  } catch (const std::bad_alloc&) {
    code = "ERR_OUT_OF_MEMORY";
    msg = std::string("out of memory while ") + what;
  } catch (const std::exception& e) {
    code = "ERR_INTERNAL";
    msg = std::string("internal error: ") + e.what();
  } catch (...) {
    code = "ERR_INTERNAL";
    msg = "internal error: unknown exception";
  }
}

// A Promise-returning worker: `run` executes off the JS thread (it must touch no JS value), then
// the promise resolves to `result` (a JS object the caller filled with JS-owned arrays) or rejects
// with an error carrying the recorded code. `keep` holds the inputs alive meanwhile.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name, const char* what, std::function<void()> run, std::shared_ptr<void> keep,
                Napi::Object result)
      : Napi::AsyncWorker(env, name), what_(what), run_(std::move(run)), keep_(std::move(keep)),
        result_(Napi::Persistent(result)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    run_guarded(run_, code_, msg_, what_);
    if (!code_.empty()) SetError(msg_);
  }
  void OnOK() override { deferred_.Resolve(result_.Value()); }
  void OnError(const Napi::Error& e) override {
    Napi::HandleScope scope(Env());
    deferred_.Reject(make_error(Env(), code_.empty() ? "ERR_INTERNAL" : code_, e.Message()).Value());
  }
  static Napi::Promise queue(Napi::Env env, const char* name, const char* what, std::function<void()> run,
                             std::shared_ptr<void> keep, Napi::Object result) {
    auto* w = new PromiseWorker(env, name, what, std::move(run), std::move(keep), result);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }

 private:
  const char* what_;
  std::function<void()> run_;
  std::shared_ptr<void> keep_;
  Napi::ObjectReference result_;
  Napi::Promise::Deferred deferred_;
  std::string code_, msg_;
};

void execute(const Baton& b) {
  if (b.cuda) geoedit::run_edit_cuda(b.job, b.params, b.cuda_opts);
  else geoedit::run_edit(b.job, b.params, b.ro);
}

void run_baton(Baton& b) {
  run_guarded([&]() { execute(b); }, b.err_code, b.err_msg, "editing");
}

Napi::Value EditSync(const Napi::CallbackInfo& info) {
  auto b = read_spec(info);
  run_baton(*b);
  if (!b->err_code.empty()) throw make_error(info.Env(), b->err_code, b->err_msg);
  return b->result.Value();
}


Napi::Value Edit(const Napi::CallbackInfo& info) {
  std::shared_ptr<Baton> b = read_spec(info);
  Napi::Object result = b->result.Value();
  return PromiseWorker::queue(info.Env(), "geoedit:edit", "editing", [b]() { execute(*b); }, b, result);
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

// ---- CUDA backend (README "CUDA backend") -----------------------------------------------------------
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

// cudaLoraGeometry({ m, n, rOld, rNew, aOld, bOld, aNew, bNew, sOld, sNew, backend }) -> { dot, na, nb }
Napi::Value CudaLoraGeometry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "Expected a CUDA LoRA geometry specification object");
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
  if (pv.IsObject()) read_params(env, pv.As<Napi::Object>(), P);
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


// ---- safetensors headers and the checkpoint data path (lib/safetensors.ts, lib/checkpoint.ts) --

Napi::Object header_to_js(Napi::Env env, const geoedit::StHeader& h) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("fileSize", double(h.file_size));
  o.Set("headerLen", double(h.header_len));
  o.Set("dataOffset", double(h.data_offset));
  if (h.has_metadata) {
    Napi::Object m = Napi::Object::New(env);
    for (const auto& kv : h.metadata) m.Set(kv.first, kv.second);
    o.Set("metadata", m);
  } else {
    o.Set("metadata", env.Null());
  }
  Napi::Array ts = Napi::Array::New(env, h.tensors.size());
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const geoedit::StTensor& t = h.tensors[i];
    Napi::Object to = Napi::Object::New(env);
    to.Set("name", t.name);
    to.Set("dtype", t.dtype);
    Napi::Array sh = Napi::Array::New(env, t.shape.size());
    for (size_t k = 0; k < t.shape.size(); ++k) sh.Set(uint32_t(k), double(t.shape[k]));
    to.Set("shape", sh);
    to.Set("begin", double(t.begin));
    to.Set("end", double(t.end));
    ts.Set(uint32_t(i), to);
  }
  o.Set("tensors", ts);
  return o;
}

template <typename F>
Napi::Value coded(Napi::Env env, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    throw make_error(env, geoedit::error_code_name(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    throw make_error(env, "ERR_OUT_OF_MEMORY", "out of memory while reading a safetensors header");
  }
}

// stHeader(path): reads and validates a safetensors header with pread.
Napi::Value StHeaderFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_type(env, "Expected a path string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  return coded(env, [&]() -> Napi::Value { return header_to_js(env, geoedit::read_st_header(path)); });
}

// stHeaderBytes(bytes, name): validates a whole file held in memory (tests, fuzzing).
Napi::Value StHeaderBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw_type(env, "Expected a Uint8Array");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  const std::string name = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "<bytes>";
  const uint8_t* p = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  const size_t n = ta.ByteLength();
  return coded(env, [&]() -> Napi::Value { return header_to_js(env, geoedit::parse_st_bytes(p, n, name)); });
}

struct StreamBaton {
  std::vector<geoedit::StreamTask> tasks;
  geoedit::Params params;
  geoedit::RunOptions ro;
  size_t block_bytes = 0;
  geoedit::StreamControl ctl;
  geoedit::StreamBackend backend;
  Keep keep;
};

geoedit::StreamSrc src_of(Napi::Object o, const char* key) {
  geoedit::StreamSrc s;
  Napi::Value v = o.Get(key);
  if (!v.IsObject()) throw_type(o.Env(), std::string("Expected a source object for ") + key);
  Napi::Object so = v.As<Napi::Object>();
  s.fd = int(num(so, "fd", -1));
  s.offset = uint64_t(num(so, "offset", 0));
  s.dtype = dtype_of(so, "dtype");
  Napi::Value f = so.Get("file");
  if (f.IsString()) s.file = f.As<Napi::String>().Utf8Value();
  return s;
}

void read_params(Napi::Env env, Napi::Object p, geoedit::Params& P) {
  Napi::Value st = p.Get("strategy");
  std::string sname = st.IsString() ? st.As<Napi::String>().Utf8Value() : "geoedit";
  if (!geoedit::parse_strategy(sname, &P.strategy)) throw make_error(env, "ERR_UNKNOWN_STRATEGY", "Unknown strategy '" + sname + "'");
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
}


// Backend choice as the edit spec carries it (lib/backend.ts resolved it): backend 'cuda' | other,
// cudaMemoryLimit (bytes, 0 = default).
void read_backend(Napi::Object spec, bool* cuda, geoedit::CudaRunOptions* opts) {
  Napi::Value be = spec.Get("backend");
  *cuda = be.IsString() && be.As<Napi::String>().Utf8Value() == "cuda";
  const double lim = num(spec, "cudaMemoryLimit", 0);
  if (!(lim >= 0) || lim != std::floor(lim) || lim > 1.8e19)
    throw make_error(spec.Env(), "ERR_INVALID_OPTION", "Expected an integer >= 0 (bytes) for cudaMemoryLimit");
  opts->memory_limit = uint64_t(lim);
}

// stream({ tasks, params, threads, blockBytes (0: the backend's default), backend, cudaMemoryLimit,
//          ctl: Float64Array(2 or 3) }) -> Promise<(stats | null)[]>
Napi::Value Stream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "Expected a stream specification object");
  Napi::Object spec = info[0].As<Napi::Object>();
  auto b = std::make_unique<StreamBaton>();
  Napi::Value pv = spec.Get("params");
  if (pv.IsObject()) read_params(env, pv.As<Napi::Object>(), b->params);
  try {
    geoedit::validate_params(b->params);
  } catch (const Error& e) {
    throw make_error(env, geoedit::error_code_name(e.code()), e.what());
  }
  b->ro.threads = int(num(spec, "threads", 0));
  b->block_bytes = size_t(num(spec, "blockBytes", 0));
  read_backend(spec, &b->backend.cuda, &b->backend.cuda_opts);
  Napi::Value cv = spec.Get("ctl");
  if (cv.IsTypedArray() && cv.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array &&
      cv.As<Napi::TypedArray>().ElementLength() >= 2) {
    Napi::TypedArray ta = cv.As<Napi::TypedArray>();
    double* p = reinterpret_cast<double*>(static_cast<char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
    b->keep.hold(ta);
    b->ctl.bytes_done = p;
    b->ctl.cancel = p + 1;
    if (ta.ElementLength() >= 3) b->ctl.task_index = p + 2;
  }
  Napi::Value tv = spec.Get("tasks");
  if (!tv.IsArray()) throw_type(env, "Expected an array of tasks");
  Napi::Array tasks = tv.As<Napi::Array>();
  Napi::Array results = Napi::Array::New(env, tasks.Length());
  for (uint32_t i = 0; i < tasks.Length(); ++i) {
    Napi::Value v = tasks.Get(i);
    if (!v.IsObject()) throw_type(env, "Expected a task object");
    Napi::Object to = v.As<Napi::Object>();
    geoedit::StreamTask t;
    const int kind = int(num(to, "kind", 0));
    if (kind < 0 || kind > 2) throw make_error(env, "ERR_INVALID_OPTION", "unknown task kind");
    t.kind = geoedit::StreamTask::Kind(kind);
    Napi::Value nv = to.Get("name");
    if (nv.IsString()) t.name = nv.As<Napi::String>().Utf8Value();
    t.rows = int64_t(num(to, "rows", 0));
    t.cols = int64_t(num(to, "cols", 0));
    t.copy_bytes = uint64_t(num(to, "copyBytes", 0));
    if (t.rows < 0 || t.cols < 0) throw make_error(env, "ERR_INVALID_OPTION", "rows and cols must be >= 0");
    t.base = src_of(to, "base");
    if (t.kind == geoedit::StreamTask::Edit) {
      t.old_ = src_of(to, "old");
      t.new_ = src_of(to, "new");
      if (to.Get("impOld").IsObject()) {
        t.imp_old = src_of(to, "impOld");
        t.imp_new = src_of(to, "impNew");
      }
      const size_t r = size_t(t.rows);
      t.c_new = static_cast<const float*>(data_of(to, "cNew", r * 4, b->keep, true));
      t.c_old = static_cast<const float*>(data_of(to, "cOld", r * 4, b->keep, true));
      if (b->params.strategy == geoedit::Strategy::Custom && (!t.c_new || !t.c_old))
        throw make_error(env, "ERR_COEFFICIENTS", "strategy 'custom' needs cNew and cOld for tensor '" + t.name + "'");
      if (to.Get("stats").ToBoolean().Value()) {
        Napi::Object st = Napi::Object::New(env);
        alloc_row_stats(env, st, r, t);
        results.Set(i, st);
      } else {
        results.Set(i, env.Null());
      }
    } else {
      results.Set(i, env.Null());
    }
    t.out_fd = int(num(to, "outFd", -1));
    t.out_offset = uint64_t(num(to, "outOffset", 0));
    if (t.out_fd >= 0 || t.kind == geoedit::StreamTask::Edit) {
      Napi::Value od = to.Get("outDtype");
      if (od.IsString()) t.out_dtype = dtype_of(to, "outDtype");
      else t.out_dtype = t.base.dtype;
    }
    b->tasks.push_back(std::move(t));
  }
  std::shared_ptr<StreamBaton> sb = std::move(b);
  return PromiseWorker::queue(env, "geoedit:stream", "streaming a checkpoint",
                              [sb]() { geoedit::run_stream(sb->tasks, sb->params, sb->ro, sb->block_bytes, sb->ctl, sb->backend); }, sb,
                              results.As<Napi::Object>());
}

// ---- LoRA (SPEC §4): geometry in factor space, materialised rows, merged full weights ----

// { L: Float32Array [rows*r], R: Float32Array [r*cols], r, scale } or null/undefined (absent side).
geoedit::LoraSide read_lora_side(Napi::Object spec, const char* key, int64_t rows, int64_t cols, Keep& keep) {
  geoedit::LoraSide side;
  Napi::Value v = spec.Get(key);
  if (v.IsUndefined() || v.IsNull()) return side;
  if (!v.IsObject()) throw_type(spec.Env(), std::string("Expected an object { L, R, r, scale } or null for ") + key);
  Napi::Object o = v.As<Napi::Object>();
  const double r = num(o, "r", -1);
  if (!(r >= 0) || r != std::floor(r) || r > 1e6)
    throw make_error(spec.Env(), "ERR_INVALID_OPTION", std::string("Expected a non-negative integer rank for ") + key + ".r");
  side.r = int64_t(r);
  side.scale = num(o, "scale", 0);
  if (side.r == 0) return side;
  side.L = static_cast<const float*>(data_of(o, "L", size_t(rows) * size_t(side.r) * 4, keep));
  side.R = static_cast<const float*>(data_of(o, "R", size_t(side.r) * size_t(cols) * 4, keep));
  return side;
}

void read_dims(Napi::Object spec, int64_t* rows, int64_t* cols) {
  const double r = num(spec, "rows", -1), c = num(spec, "cols", -1);
  if (!(r >= 0) || !(c >= 0) || r != std::floor(r) || c != std::floor(c) || r * c > 9.0e15)
    throw make_error(spec.Env(), "ERR_INVALID_OPTION", "rows and cols must be non-negative integers");
  *rows = int64_t(r);
  *cols = int64_t(c);
}

void read_params_into(Napi::Env env, Napi::Object spec, geoedit::Params& P) {
  Napi::Value pv = spec.Get("params");
  if (!pv.IsObject()) throw_type(env, "Expected params object");
  read_params(env, pv.As<Napi::Object>(), P);
  try {
    geoedit::validate_params(P);
  } catch (const Error& e) {
    throw make_error(env, geoedit::error_code_name(e.code()), e.what());
  }
}


// loraGeometry({ rows, cols, old, new, params, cNew?, cOld?, threads?, tensorName? })
//   -> Promise<{ cos, region, coefNew, coefOld, na, nb, dot, deltaSq }>
Napi::Value LoraGeometry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "Expected a LoRA geometry specification object");
  Napi::Object spec = info[0].As<Napi::Object>();
  auto keep = std::make_shared<Keep>();
  auto job = std::make_shared<geoedit::LoraJob>();
  auto params = std::make_shared<geoedit::Params>();
  geoedit::RunOptions ro;
  read_dims(spec, &job->rows, &job->cols);
  job->old_ = read_lora_side(spec, "old", job->rows, job->cols, *keep);
  job->new_ = read_lora_side(spec, "new", job->rows, job->cols, *keep);
  job->c_new = static_cast<const float*>(data_of(spec, "cNew", size_t(job->rows) * 4, *keep, true));
  job->c_old = static_cast<const float*>(data_of(spec, "cOld", size_t(job->rows) * 4, *keep, true));
  Napi::Value tn = spec.Get("tensorName");
  if (tn.IsString()) job->tensor_name = tn.As<Napi::String>().Utf8Value();
  read_params_into(env, spec, *params);
  ro.threads = int(num(spec, "threads", 0));
  Napi::Object result = Napi::Object::New(env);
  const size_t r = size_t(job->rows);
  job->cos = alloc_array<double>(env, result, "cos", r);
  job->region = alloc_array<uint8_t>(env, result, "region", r);
  job->coef_new = alloc_array<float>(env, result, "coefNew", r);
  job->coef_old = alloc_array<float>(env, result, "coefOld", r);
  job->na = alloc_array<double>(env, result, "na", r);
  job->nb = alloc_array<double>(env, result, "nb", r);
  job->dot = alloc_array<double>(env, result, "dot", r);
  job->delta_sq = alloc_array<double>(env, result, "deltaSq", r);
  return PromiseWorker::queue(env, "geoedit:loraGeometry", "in the LoRA path",
                              [job, params, ro]() { geoedit::run_lora_geometry(*job, *params, ro); }, keep, result);
}

// loraMaterialize({ rows, cols, side, r0, r1, threads? }) -> Float32Array [(r1-r0)*cols] (sync; rows of s*L*R)
Napi::Value LoraMaterialize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "Expected a LoRA materialise specification object");
  Napi::Object spec = info[0].As<Napi::Object>();
  Keep keep;
  int64_t rows, cols;
  read_dims(spec, &rows, &cols);
  geoedit::LoraSide side = read_lora_side(spec, "side", rows, cols, keep);
  const double r0 = num(spec, "r0", 0), r1 = num(spec, "r1", double(rows));
  if (!(r0 >= 0) || !(r1 >= r0) || r1 > double(rows) || r0 != std::floor(r0) || r1 != std::floor(r1))
    throw make_error(env, "ERR_INVALID_OPTION", "Expected 0 <= r0 <= r1 <= rows for loraMaterialize");
  geoedit::RunOptions ro;
  ro.threads = int(num(spec, "threads", 0));
  const size_t count = size_t(r1 - r0) * size_t(cols);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, count * 4);
  std::string code, msg;
  run_guarded([&]() { geoedit::lora_materialize(side, cols, int64_t(r0), int64_t(r1), static_cast<float*>(ab.Data()), ro); },
              code, msg, "in the LoRA path");
  if (!code.empty()) throw make_error(env, code, msg);
  return Napi::Float32Array::New(env, count, ab, 0);
}

// loraMaterializeAsync({ rows, cols, side, r0, r1, threads? }) -> Promise<{ out: Float32Array }> (off the event loop)
Napi::Value LoraMaterializeAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "Expected a LoRA materialise specification object");
  Napi::Object spec = info[0].As<Napi::Object>();
  auto keep = std::make_shared<Keep>();
  int64_t rows, cols;
  read_dims(spec, &rows, &cols);
  geoedit::LoraSide side = read_lora_side(spec, "side", rows, cols, *keep);
  const double r0 = num(spec, "r0", 0), r1 = num(spec, "r1", double(rows));
  if (!(r0 >= 0) || !(r1 >= r0) || r1 > double(rows) || r0 != std::floor(r0) || r1 != std::floor(r1))
    throw make_error(env, "ERR_INVALID_OPTION", "Expected 0 <= r0 <= r1 <= rows for loraMaterialize");
  geoedit::RunOptions ro;
  ro.threads = int(num(spec, "threads", 0));
  Napi::Object result = Napi::Object::New(env);
  float* out = alloc_array<float>(env, result, "out", size_t(r1 - r0) * size_t(cols));
  const int64_t a = int64_t(r0), b = int64_t(r1);
  return PromiseWorker::queue(env, "geoedit:loraMaterialize", "in the LoRA path",
                              [side, cols, a, b, out, ro]() { geoedit::lora_materialize(side, cols, a, b, out, ro); }, keep, result);
}

// loraMerge({ rows, cols, old, new, cNew, cOld, transposed, s0, s1, base, baseDtype, outDtype, threads?, tensorName? })
//   -> Promise<Float32Array | Uint16Array> (stored rows [s0, s1) of the merged weights)
Napi::Value LoraMerge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "Expected a LoRA merge specification object");
  Napi::Object spec = info[0].As<Napi::Object>();
  auto keep = std::make_shared<Keep>();
  auto job = std::make_shared<geoedit::LoraMergeJob>();
  read_dims(spec, &job->rows, &job->cols);
  job->old_ = read_lora_side(spec, "old", job->rows, job->cols, *keep);
  job->new_ = read_lora_side(spec, "new", job->rows, job->cols, *keep);
  job->c_new = static_cast<const float*>(data_of(spec, "cNew", size_t(job->rows) * 4, *keep));
  job->c_old = static_cast<const float*>(data_of(spec, "cOld", size_t(job->rows) * 4, *keep));
  job->transposed = spec.Get("transposed").ToBoolean().Value();
  const int64_t stored_rows = job->transposed ? job->cols : job->rows, stored_cols = job->transposed ? job->rows : job->cols;
  const double s0 = num(spec, "s0", 0), s1 = num(spec, "s1", double(stored_rows));
  if (!(s0 >= 0) || !(s1 >= s0) || s1 > double(stored_rows) || s0 != std::floor(s0) || s1 != std::floor(s1))
    throw make_error(env, "ERR_INVALID_OPTION", "Expected 0 <= s0 <= s1 <= stored rows for loraMerge");
  job->s0 = int64_t(s0);
  job->s1 = int64_t(s1);
  const size_t count = size_t(job->s1 - job->s0) * size_t(stored_cols);
  job->base.dtype = dtype_of(spec, "baseDtype");
  job->base.data = data_of(spec, "base", count * geoedit::dtype_size(job->base.dtype), *keep);
  job->out_dtype = dtype_of(spec, "outDtype");
  Napi::Value tn = spec.Get("tensorName");
  if (tn.IsString()) job->tensor_name = tn.As<Napi::String>().Utf8Value();
  geoedit::RunOptions ro;
  ro.threads = int(num(spec, "threads", 0));
  Napi::Object result = Napi::Object::New(env);
  if (job->out_dtype == DType::F32) job->out = alloc_array<float>(env, result, "out", count);
  else job->out = alloc_array<uint16_t>(env, result, "out", count);
  return PromiseWorker::queue(env, "geoedit:loraMerge", "in the LoRA path", [job, ro]() { geoedit::run_lora_merge(*job, ro); }, keep, result);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaProbe", Napi::Function::New(env, CudaProbe, "cudaProbe"));
  exports.Set("cudaLoraGeometry", Napi::Function::New(env, CudaLoraGeometry, "cudaLoraGeometry"));
  exports.Set("cudaBench", Napi::Function::New(env, CudaBench, "cudaBench"));
  exports.Set("edit", Napi::Function::New(env, Edit, "edit"));
  exports.Set("editSync", Napi::Function::New(env, EditSync, "editSync"));
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("setSimd", Napi::Function::New(env, SetSimd, "setSimd"));
  exports.Set("defaults", Napi::Function::New(env, Defaults, "defaults"));
  exports.Set("convert", Napi::Function::New(env, Convert, "convert"));
  exports.Set("triad", Napi::Function::New(env, Triad, "triad"));
  exports.Set("loraGeometry", Napi::Function::New(env, LoraGeometry, "loraGeometry"));
  exports.Set("loraMaterialize", Napi::Function::New(env, LoraMaterialize, "loraMaterialize"));
  exports.Set("loraMerge", Napi::Function::New(env, LoraMerge, "loraMerge"));
  exports.Set("loraMaterializeAsync", Napi::Function::New(env, LoraMaterializeAsync, "loraMaterializeAsync"));
  exports.Set("stHeader", Napi::Function::New(env, StHeaderFile, "stHeader"));
  exports.Set("stHeaderBytes", Napi::Function::New(env, StHeaderBytes, "stHeaderBytes"));
  exports.Set("stream", Napi::Function::New(env, Stream, "stream"));
  return exports;
}

}  // namespace

NODE_API_MODULE(geoedit, Init)
