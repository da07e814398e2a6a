// What every area of the binding shares: the argument readers, Keep, the one error path and the
// one worker shape. Only native/binding/ includes napi.h (the core is plain C++).
//
// Error path: every native failure becomes a Failure { code, message, details } (run_guarded), and
// every Failure becomes one JS error (to_js): an Error (or a TypeError for ERR_INVALID_ARG_TYPE)
// with `.code` always set and `.details` ({ file, tensor, option, row, column }, each only when the
// core knows it). Sync calls throw it (call_sync), async calls reject with it (PromiseWorker).
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/preserve.h"
#include "geoedit/cuda.h"
#include "geoedit/geoedit.h"

namespace geoedit {
struct LoraSide;
class OrderedHash;
}

namespace geoedit_binding {

using geoedit::DType;

// ---- errors ---------------------------------------------------------------------------------------

struct Failure {
  std::string code;  // empty: no failure
  std::string message;
  geoedit::ErrorDetails details;
  bool failed() const { return !code.empty(); }
};

// The JS error for a failure: `.code` always, `.details` when the core knew any.
Napi::Error to_js(Napi::Env env, const Failure& f);
// A coded error from the binding itself (bad arguments).
Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& msg,
                       const geoedit::ErrorDetails& details = geoedit::ErrorDetails());
[[noreturn]] void throw_type(Napi::Env env, const std::string& msg);

// Runs fn() and records any exception as a Failure. `what` names the work for out-of-memory.
void run_guarded(const std::function<void()>& fn, Failure& f, const char* what);

// Runs fn() on the JS thread; a failure is thrown as the JS error (the sync form of one error path).
template <class F>
auto call_sync(Napi::Env env, const char* what, F&& fn) -> decltype(fn()) {
  Failure f;
  using R = decltype(fn());
  if constexpr (std::is_void<R>::value) {
    run_guarded(fn, f, what);
    if (f.failed()) throw to_js(env, f);
  } else {
    R out{};
    run_guarded([&]() { out = fn(); }, f, what);
    if (f.failed()) throw to_js(env, f);
    return out;
  }
}

// ---- the one worker shape -----------------------------------------------------------------------------

// A Promise-returning worker: `run` executes off the JS thread (it must touch no JS value), then
// the promise resolves to `result` (what `finish`, run on the JS thread, returns; by default the
// JS object the caller filled with JS-owned arrays) or rejects with the failure's JS error.
// `keep` holds the inputs (and the job) alive meanwhile.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Finish = std::function<Napi::Value(Napi::Env)>;
  static Napi::Promise queue(Napi::Env env, const char* name, const char* what, std::function<void()> run,
                             std::shared_ptr<void> keep, Napi::Object result, Finish finish = nullptr);

  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  PromiseWorker(Napi::Env env, const char* name, const char* what, std::function<void()> run, std::shared_ptr<void> keep,
                Napi::Object result, Finish finish);
  const char* what_;
  std::function<void()> run_;
  std::shared_ptr<void> keep_;
  Napi::ObjectReference result_;
  Finish finish_;
  Napi::Promise::Deferred deferred_;
  Failure failure_;
};

// ---- argument readers -----------------------------------------------------------------------------

// Holds JS objects alive while native code uses their memory. An async call's Keep (async = true)
// also makes sure that memory stays valid while JS runs (issue 14 class 6b): a JS caller can detach
// an ArrayBuffer (structuredClone/postMessage with transfer) or shrink a resizable one, and once the
// new owner is collected the memory is freed. N-API offers no way to hold a backing store, so
// each input typed array of an async call is one of:
//   - backed by a SharedArrayBuffer (never detached, never shrinks): used in place;
//   - a plain, fixed-length ArrayBuffer, when lib/ has handed the binding Node's own
//     `markAsUntransferable` (_setTransferGuard) and the engine has no other way to detach
//     (no ArrayBuffer.prototype.transfer): marked, so a transfer clones it instead, and used in place;
//   - otherwise copied (the call's own copy, freed when the call settles).
struct Keep {
  std::vector<Napi::ObjectReference> refs;
  std::vector<std::unique_ptr<char[]>> copies;
  bool async = false;
  void hold(Napi::Object o) { refs.push_back(Napi::Persistent(o)); }
};

// Whether `ta`'s memory can be used in place by an async call (see Keep); marks it if needed.
bool pin_in_place(Napi::TypedArray ta);
// _setTransferGuard(markAsUntransferable): lib/native.ts hands over Node's function once, at load.
Napi::Value set_transfer_guard(const Napi::CallbackInfo& info);

// The spec object of a call (argument 0), or an ERR_INVALID_ARG_TYPE TypeError naming `what`.
Napi::Object spec_arg(const Napi::CallbackInfo& info, const char* what);

double num(Napi::Object o, const char* key, double dflt);
std::string str(Napi::Object o, const char* key, const std::string& dflt = std::string());
DType dtype_of(Napi::Object o, const char* key);
// A typed array's bytes (start pointer and length).
void typed_bytes(Napi::TypedArray ta, const char* key, char** data, size_t* bytes);
// The OrderedHash behind a handle from outputHash() (hash.cc); a TypeError naming `what` otherwise.
std::shared_ptr<geoedit::OrderedHash> output_hash_of(Napi::Env env, Napi::Value v, const std::string& what);
// A typed array's data pointer, checked to hold at least `bytes` bytes; held in `keep` (and, for
// an async call, used in place or copied: see Keep).
const void* data_of(Napi::Object spec, const char* key, size_t bytes, Keep& keep, bool optional = false);
// rows/cols: non-negative integers (ERR_INVALID_OPTION otherwise).
void read_dims(Napi::Object spec, int64_t* rows, int64_t* cols);
// Params from a { strategy, scale, ... } object (not validated).
void read_params(Napi::Env env, Napi::Object p, geoedit::Params& P);
// Params from spec.params (required), validated by the core.
void read_params_into(Napi::Env env, Napi::Object spec, geoedit::Params& P);
// Backend choice as a spec carries it (lib/backend.ts resolved it): backend 'cuda' | other,
// cudaMemoryLimit (bytes, 0 = default).
void read_backend(Napi::Object spec, bool* cuda, geoedit::CudaRunOptions* opts);
// spec[key]: a LoRA side { L: Float32Array [rows*r], R: Float32Array [r*cols], r, scale } or null
// (absent: r = 0). The factors are held in `keep` (pinned or copied for an async call).
geoedit::LoraSide read_lora_side(Napi::Object spec, const char* key, int64_t rows, int64_t cols, Keep& keep);
// RunOptions.threads from spec.threads (0: the whole pool).
geoedit::RunOptions read_run_options(Napi::Object spec);

// ---- JS-owned outputs -------------------------------------------------------------------------------

// A fresh typed array of `count` T set as result[key]; returns its data.
template <typename T>
T* alloc_array(Napi::Env env, Napi::Object result, const char* key, size_t count);
// The per-row statistics every edit returns (cos, region, coefNew, coefOld, deltaSq, na, nb), as
// JS-owned arrays set on `obj`: the one allocator of geoedit::RowStats.
geoedit::RowStats alloc_row_stats(Napi::Env env, Napi::Object obj, size_t rows);

// ---- preservation statistics (preserve.cc) ------------------------------------------------------------

// v = { cov?, covShape?, editCov?, keys?, keysShape?, editKeys?, basis?, basisShape?, rho?, mu?, source?,
// tensor?, blas? } read into *out and *blas (arrays held in keep; checked against their shapes); false when v
// is undefined/null. The operator is built later, off the JS thread (geoedit::build_preserve).
bool read_preserve_spec(Napi::Value v, const std::string& tensor, geoedit::PreserveSpec* out, geoedit::BlasChoice* blas,
                        Keep& keep);
// blas: 'auto' | 'eigen' | 'openblas' | undefined (GEOEDIT_BLAS) -> the choice; else ERR_INVALID_OPTION.
geoedit::BlasChoice blas_choice_of(Napi::Object o, const char* key);
// result.preserveProvider = who computed the preserved rows (geoedit::preserve_provider), on the JS thread.
void put_preserve_provider(Napi::Object result, const std::string& provider);
// result.preserveEnergy = Float64Array(10); filled by put_preserve_energy after the run.
double* alloc_preserve_energy(Napi::Env env, Napi::Object result);
void put_preserve_energy(const geoedit::PreserveStats& st, double* dst);

// ---- the areas (each file registers its exports) --------------------------------------------------------

void register_edit(Napi::Env env, Napi::Object exports);
void register_stream(Napi::Env env, Napi::Object exports);
void register_lora(Napi::Env env, Napi::Object exports);
void register_probe(Napi::Env env, Napi::Object exports);
void register_safetensors(Napi::Env env, Napi::Object exports);
void register_testing(Napi::Env env, Napi::Object exports);
void register_preserve(Napi::Env env, Napi::Object exports);
void register_hash(Napi::Env env, Napi::Object exports);

}  // namespace geoedit_binding
