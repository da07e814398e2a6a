// The binding's shared parts (common.h): one error path, one worker shape, the argument readers
// and the one allocator of the per-row statistics.
#include "common.h"

#include "core/lora.h"

#include <cmath>
#include <cstring>
#include <new>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace geoedit_binding {

using geoedit::Error;

// ---- errors ---------------------------------------------------------------------------------------

namespace {

Napi::Value details_to_js(Napi::Env env, const geoedit::ErrorDetails& d) {
  if (d.file.empty() && d.tensor.empty() && d.option.empty() && d.row < 0 && d.column < 0) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  if (!d.file.empty()) o.Set("file", d.file);
  if (!d.tensor.empty()) o.Set("tensor", d.tensor);
  if (!d.option.empty()) o.Set("option", d.option);
  if (d.row >= 0) o.Set("row", double(d.row));
  if (d.column >= 0) o.Set("column", double(d.column));
  return o;
}

}  // namespace

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& msg, const geoedit::ErrorDetails& details) {
  Napi::Error e = code == "ERR_INVALID_ARG_TYPE" ? Napi::TypeError::New(env, msg) : Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code.empty() ? "ERR_INTERNAL" : code));
  Napi::Value d = details_to_js(env, details);
  if (!d.IsUndefined()) e.Set("details", d);
  return e;
}

Napi::Error to_js(Napi::Env env, const Failure& f) { return make_error(env, f.code, f.message, f.details); }

[[noreturn]] void throw_type(Napi::Env env, const std::string& msg) { throw make_error(env, "ERR_INVALID_ARG_TYPE", msg); }

void run_guarded(const std::function<void()>& fn, Failure& f, const char* what) {
  try {
    fn();
  } catch (const Error& e) {
    f.code = geoedit::error_code_name(e.code());
    f.message = e.what();
    f.details = e.details();
  } catch (const std::bad_alloc&) {
    f.code = "ERR_OUT_OF_MEMORY";
    f.message = std::string("out of memory while ") + what;
  } catch (const std::exception& e) {
    f.code = "ERR_INTERNAL";
    f.message = std::string("internal error: ") + e.what();
  } catch (...) {
    f.code = "ERR_INTERNAL";
    f.message = "internal error: unknown exception";
  }
}

// ---- the one worker shape -----------------------------------------------------------------------------

PromiseWorker::PromiseWorker(Napi::Env env, const char* name, const char* what, std::function<void()> run,
                             std::shared_ptr<void> keep, Napi::Object result, Finish finish)
    : Napi::AsyncWorker(env, name), what_(what), run_(std::move(run)), keep_(std::move(keep)),
      result_(Napi::Persistent(result)), finish_(std::move(finish)), deferred_(Napi::Promise::Deferred::New(env)) {}

Napi::Promise PromiseWorker::queue(Napi::Env env, const char* name, const char* what, std::function<void()> run,
                                   std::shared_ptr<void> keep, Napi::Object result, Finish finish) {
  auto* w = new PromiseWorker(env, name, what, std::move(run), std::move(keep), result, std::move(finish));
  Napi::Promise p = w->deferred_.Promise();
  w->Queue();
  return p;
}

void PromiseWorker::Execute() {
  run_guarded(run_, failure_, what_);
  if (failure_.failed()) SetError(failure_.message);
}

void PromiseWorker::OnOK() {
  Napi::HandleScope scope(Env());
  if (!finish_) {
    deferred_.Resolve(result_.Value());
    return;
  }
  try {
    deferred_.Resolve(finish_(Env()));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

void PromiseWorker::OnError(const Napi::Error& e) {
  Napi::HandleScope scope(Env());
  Failure f = failure_;
  if (!f.failed()) {  // SetError from anywhere else: still a coded rejection
    f.code = "ERR_INTERNAL";
    f.message = e.Message();
  }
  deferred_.Reject(to_js(Env(), f).Value());
}

// ---- argument readers -----------------------------------------------------------------------------

Napi::Object spec_arg(const Napi::CallbackInfo& info, const char* what) {
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(info.Env(), std::string("Expected ") + what);
  return info[0].As<Napi::Object>();
}

double num(Napi::Object o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) throw_type(o.Env(), std::string("Expected a number for ") + key);
  return v.As<Napi::Number>().DoubleValue();
}

std::string str(Napi::Object o, const char* key, const std::string& dflt) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : dflt;
}

DType dtype_of(Napi::Object o, const char* key) {
  const std::string s = str(o, key);
  DType d;
  if (!geoedit::parse_dtype(s, &d))
    throw make_error(o.Env(), "ERR_UNKNOWN_DTYPE", std::string("Expected 'f32', 'f16' or 'bf16' for ") + key + " but received '" + s + "'");
  return d;
}

void typed_bytes(Napi::TypedArray ta, const char* key, char** data, size_t* bytes) {
  // napi_get_typedarray_info's data pointer works for ArrayBuffer and SharedArrayBuffer backing
  // alike (ta.ArrayBuffer() refuses a SharedArrayBuffer with a bare "Invalid argument").
  napi_typedarray_type type;
  size_t length, offset;
  void* p = nullptr;
  napi_value ab;
  if (napi_get_typedarray_info(ta.Env(), ta, &type, &length, &p, &ab, &offset) != napi_ok)
    throw make_error(ta.Env(), "ERR_INVALID_ARG_TYPE", std::string("Cannot read the typed array ") + key);
  *data = static_cast<char*>(p);
  *bytes = ta.ByteLength();
  if (!*data) *bytes = 0;  // detached
}

namespace {

// Per JS environment (the main thread and each worker thread load their own instance of the
// addon; a function of one isolate must never be called from another): napi instance data.
struct Guard {
  Napi::FunctionReference mark;       // markAsUntransferable, from lib/native.ts
  Napi::FunctionReference resizable;  // the ArrayBuffer.prototype.resizable getter (own properties can lie)
  bool engine_can_transfer = true;    // ArrayBuffer.prototype.transfer exists: marking is not enough
};

Guard* guard_of(Napi::Env env) { return env.GetInstanceData<Guard>(); }

}  // namespace

Napi::Value set_transfer_guard(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) throw_type(env, "Expected _setTransferGuard(markAsUntransferable)");
  Guard* g = guard_of(env);
  const bool fresh = g == nullptr;
  if (fresh) g = new Guard();  // once per environment; a later call replaces the function
  g->mark = Napi::Persistent(info[0].As<Napi::Function>());
  g->mark.SuppressDestruct();  // the environment may be going away when the Guard is freed
  Napi::Object proto = env.Global().Get("ArrayBuffer").As<Napi::Object>().Get("prototype").As<Napi::Object>();
  g->engine_can_transfer = proto.Get("transfer").IsFunction() || proto.Get("transferToFixedLength").IsFunction();
  Napi::Object object = env.Global().Get("Object").As<Napi::Object>();
  Napi::Value desc = object.Get("getOwnPropertyDescriptor").As<Napi::Function>().Call(object, {proto, Napi::String::New(env, "resizable")});
  if (desc.IsObject() && desc.As<Napi::Object>().Get("get").IsFunction()) {
    g->resizable = Napi::Persistent(desc.As<Napi::Object>().Get("get").As<Napi::Function>());
    g->resizable.SuppressDestruct();
  }
  if (fresh) env.SetInstanceData<Guard>(g);  // freed with the environment
  return env.Undefined();
}

bool can_guard_untransferable(napi_env env) {
  Guard* g = guard_of(Napi::Env(env));
  return g && !g->mark.IsEmpty() && !g->engine_can_transfer;
}

bool guard_untransferable(napi_env env, napi_value ab) {
  Napi::Env e(env);
  Guard* g = guard_of(e);
  if (!g || g->mark.IsEmpty() || g->engine_can_transfer) return false;
  g->mark.Call({Napi::Value(e, ab)});
  return true;
}

bool pin_in_place(Napi::TypedArray ta) {
  napi_typedarray_type type;
  size_t length, offset;
  void* p = nullptr;
  napi_value ab;
  if (napi_get_typedarray_info(ta.Env(), ta, &type, &length, &p, &ab, &offset) != napi_ok) return false;
  Napi::Value buf(ta.Env(), ab);  // the real buffer (a `buffer` property could be spoofed)
  if (!buf.IsArrayBuffer()) return buf.IsObject();  // a SharedArrayBuffer: cannot be detached or shrunk
  Guard* g = guard_of(ta.Env());
  if (!g || g->mark.IsEmpty() || g->engine_can_transfer) return false;
  if (g->resizable.IsEmpty() || g->resizable.Call(buf, {}).ToBoolean().Value()) return false;
  g->mark.Call({buf});
  return true;
}

const void* data_of(Napi::Object spec, const char* key, size_t bytes, Keep& keep, bool optional) {
  Napi::Value v = spec.Get(key);
  if (optional && (v.IsUndefined() || v.IsNull())) return nullptr;
  if (!v.IsTypedArray()) throw_type(spec.Env(), std::string("Expected a typed array for ") + key);
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  char* p;
  size_t have;
  typed_bytes(ta, key, &p, &have);
  if (have < bytes)
    throw make_error(spec.Env(), "ERR_DATA_LENGTH", std::string(key) + " holds " + std::to_string(have) + " bytes but " +
                                                        std::to_string(bytes) + " are needed");
  keep.hold(ta);
  if (!keep.async || bytes == 0 || pin_in_place(ta)) return p;
  std::unique_ptr<char[]> copy(new char[bytes]);
  std::memcpy(copy.get(), p, bytes);
  keep.copies.push_back(std::move(copy));
  return keep.copies.back().get();
}

void read_dims(Napi::Object spec, int64_t* rows, int64_t* cols) {
  const double r = num(spec, "rows", -1), c = num(spec, "cols", -1);
  if (!(r >= 0) || !(c >= 0) || r != std::floor(r) || c != std::floor(c) || r * c > 9.0e15)
    throw make_error(spec.Env(), "ERR_INVALID_OPTION", "rows and cols must be non-negative integers");
  *rows = int64_t(r);
  *cols = int64_t(c);
}

void read_params(Napi::Env env, Napi::Object p, geoedit::Params& P) {
  const std::string sname = str(p, "strategy", "geoedit");
  if (!geoedit::parse_strategy(sname, &P.strategy)) {
    geoedit::ErrorDetails d;
    d.option = "strategy";
    throw make_error(env, "ERR_UNKNOWN_STRATEGY", "Unknown strategy '" + sname + "'", d);
  }
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
  P.allow_non_finite_output = p.Get("allowNonFiniteOutput").ToBoolean().Value();
}

void read_params_into(Napi::Env env, Napi::Object spec, geoedit::Params& P) {
  Napi::Value pv = spec.Get("params");
  if (!pv.IsObject()) throw_type(env, "Expected params object");
  read_params(env, pv.As<Napi::Object>(), P);
  call_sync(env, "validating options", [&]() { geoedit::validate_params(P); });
}

void read_backend(Napi::Object spec, bool* cuda, geoedit::CudaRunOptions* opts) {
  *cuda = str(spec, "backend") == "cuda";
  const double lim = num(spec, "cudaMemoryLimit", 0);
  if (!(lim >= 0) || lim != std::floor(lim) || lim > 1.8e19) {
    geoedit::ErrorDetails d;
    d.option = "cudaMemoryLimit";
    throw make_error(spec.Env(), "ERR_INVALID_OPTION", "Expected an integer >= 0 (bytes) for cudaMemoryLimit", d);
  }
  opts->memory_limit = uint64_t(lim);
}

// { L, R, r, scale } | null: one LoRA side (tau = scale*L*R, L [rows, r], R [r, cols]).
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

geoedit::RunOptions read_run_options(Napi::Object spec) {
  geoedit::RunOptions ro;
  ro.threads = int(num(spec, "threads", 0));
  return ro;
}

// ---- JS-owned outputs -------------------------------------------------------------------------------

namespace {

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
  (void)p;
  (void)bytes;
#endif
}

}  // namespace

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

template double* alloc_array<double>(Napi::Env, Napi::Object, const char*, size_t);
template float* alloc_array<float>(Napi::Env, Napi::Object, const char*, size_t);
template uint16_t* alloc_array<uint16_t>(Napi::Env, Napi::Object, const char*, size_t);
template uint8_t* alloc_array<uint8_t>(Napi::Env, Napi::Object, const char*, size_t);

geoedit::RowStats alloc_row_stats(Napi::Env env, Napi::Object obj, size_t rows) {
  geoedit::RowStats s{};
  s.cos = alloc_array<double>(env, obj, "cos", rows);
  s.region = alloc_array<uint8_t>(env, obj, "region", rows);
  s.coef_new = alloc_array<float>(env, obj, "coefNew", rows);
  s.coef_old = alloc_array<float>(env, obj, "coefOld", rows);
  s.delta_sq = alloc_array<double>(env, obj, "deltaSq", rows);
  s.na = alloc_array<double>(env, obj, "na", rows);
  s.nb = alloc_array<double>(env, obj, "nb", rows);
  return s;
}

}  // namespace geoedit_binding
