// LoRA (SPEC §4, native/core/lora.h): geometry in factor space, materialised rows, merged full weights.
//   A side is { L: Float32Array [rows*r], R: Float32Array [r*cols], r, scale } or null (absent).
#include "common.h"

#include <cmath>

#include "core/lora.h"

namespace geoedit_binding {

namespace {

// rows, cols and both sides' factors (old, new).
template <class J>
void read_factors(Napi::Object spec, J& job, Keep& keep) {
  read_dims(spec, &job.rows, &job.cols);
  job.old_ = read_lora_side(spec, "old", job.rows, job.cols, keep);
  job.new_ = read_lora_side(spec, "new", job.rows, job.cols, keep);
}

// [lo, hi) from spec[k0], spec[k1] (defaults 0 and `limit`), 0 <= lo <= hi <= limit.
void read_range(Napi::Object spec, const char* k0, const char* k1, int64_t limit, const char* msg, int64_t* lo, int64_t* hi) {
  const double a = num(spec, k0, 0), b = num(spec, k1, double(limit));
  if (!(a >= 0) || !(b >= a) || b > double(limit) || a != std::floor(a) || b != std::floor(b))
    throw make_error(spec.Env(), "ERR_INVALID_OPTION", msg);
  *lo = int64_t(a);
  *hi = int64_t(b);
}

// loraGeometry({ rows, cols, old, new, params, cNew?, cOld?, threads?, tensorName? })
//   -> Promise<{ cos, region, coefNew, coefOld, deltaSq, na, nb, dot }>
Napi::Value LoraGeometry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object spec = spec_arg(info, "a LoRA geometry specification object");
  struct Baton {
    geoedit::LoraJob job;
    geoedit::Params params;
    geoedit::RunOptions ro;
    Keep keep;
  };
  auto b = std::make_shared<Baton>();
  b->keep.async = true;
  geoedit::LoraJob& job = b->job;
  read_factors(spec, job, b->keep);
  job.c_new = static_cast<const float*>(data_of(spec, "cNew", size_t(job.rows) * 4, b->keep, true));
  job.c_old = static_cast<const float*>(data_of(spec, "cOld", size_t(job.rows) * 4, b->keep, true));
  job.tensor_name = str(spec, "tensorName");
  read_params_into(env, spec, b->params);
  b->ro = read_run_options(spec);
  Napi::Object result = Napi::Object::New(env);
  job.stats = alloc_row_stats(env, result, size_t(job.rows));
  job.dot = alloc_array<double>(env, result, "dot", size_t(job.rows));
  return PromiseWorker::queue(env, "geoedit:loraGeometry", "in the LoRA path",
                              [b]() { geoedit::run_lora_geometry(b->job, b->params, b->ro); }, b, result);
}

// The rows [r0, r1) of one side's tau = s*L*R to materialise.
struct Materialize {
  geoedit::LoraSide side;
  int64_t cols = 0, r0 = 0, r1 = 0;
  geoedit::RunOptions ro;
  Keep keep;
  float* out = nullptr;
  void run() const { geoedit::lora_materialize(side, cols, r0, r1, out, ro); }
};

std::shared_ptr<Materialize> read_materialize(const Napi::CallbackInfo& info, bool async) {
  Napi::Object spec = spec_arg(info, "a LoRA materialise specification object");
  auto m = std::make_shared<Materialize>();
  m->keep.async = async;
  int64_t rows;
  read_dims(spec, &rows, &m->cols);
  m->side = read_lora_side(spec, "side", rows, m->cols, m->keep);
  read_range(spec, "r0", "r1", rows, "Expected 0 <= r0 <= r1 <= rows for loraMaterialize", &m->r0, &m->r1);
  m->ro = read_run_options(spec);
  return m;
}

// loraMaterialize({ rows, cols, side, r0, r1, threads? }) -> Float32Array [(r1-r0)*cols] (sync; rows of s*L*R)
Napi::Value LoraMaterialize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Materialize> m = read_materialize(info, false);
  const size_t count = size_t(m->r1 - m->r0) * size_t(m->cols);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, count * 4);
  m->out = static_cast<float*>(ab.Data());
  call_sync(env, "in the LoRA path", [&]() { m->run(); });
  return Napi::Float32Array::New(env, count, ab, 0);
}

// loraMaterializeAsync({ rows, cols, side, r0, r1, threads? }) -> Promise<{ out: Float32Array }> (off the event loop)
Napi::Value LoraMaterializeAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Materialize> m = read_materialize(info, true);
  Napi::Object result = Napi::Object::New(env);
  m->out = alloc_array<float>(env, result, "out", size_t(m->r1 - m->r0) * size_t(m->cols));
  return PromiseWorker::queue(env, "geoedit:loraMaterialize", "in the LoRA path", [m]() { m->run(); }, m, result);
}

// loraMerge({ rows, cols, old, new, cNew, cOld, transposed, s0, s1, base, baseDtype, outDtype, threads?, tensorName? })
//   -> Promise<{ out: Float32Array | Uint16Array }> (stored rows [s0, s1) of the merged weights)
Napi::Value LoraMerge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object spec = spec_arg(info, "a LoRA merge specification object");
  struct Baton {
    geoedit::LoraMergeJob job;
    geoedit::RunOptions ro;
    Keep keep;
  };
  auto b = std::make_shared<Baton>();
  b->keep.async = true;
  geoedit::LoraMergeJob& job = b->job;
  read_factors(spec, job, b->keep);
  job.c_new = static_cast<const float*>(data_of(spec, "cNew", size_t(job.rows) * 4, b->keep));
  job.c_old = static_cast<const float*>(data_of(spec, "cOld", size_t(job.rows) * 4, b->keep));
  job.transposed = spec.Get("transposed").ToBoolean().Value();
  const int64_t stored_rows = job.transposed ? job.cols : job.rows, stored_cols = job.transposed ? job.rows : job.cols;
  read_range(spec, "s0", "s1", stored_rows, "Expected 0 <= s0 <= s1 <= stored rows for loraMerge", &job.s0, &job.s1);
  const size_t count = size_t(job.s1 - job.s0) * size_t(stored_cols);
  job.base.dtype = dtype_of(spec, "baseDtype");
  job.base.data = data_of(spec, "base", count * geoedit::dtype_size(job.base.dtype), b->keep);
  job.out_dtype = dtype_of(spec, "outDtype");
  job.tensor_name = str(spec, "tensorName");
  job.allow_non_finite_output = spec.Get("allowNonFiniteOutput").ToBoolean().Value();
  b->ro = read_run_options(spec);
  Napi::Object result = Napi::Object::New(env);
  if (job.out_dtype == DType::F32) job.out = alloc_array<float>(env, result, "out", count);
  else job.out = alloc_array<uint16_t>(env, result, "out", count);
  return PromiseWorker::queue(env, "geoedit:loraMerge", "in the LoRA path", [b]() { geoedit::run_lora_merge(b->job, b->ro); }, b,
                              result);
}

}  // namespace

void register_lora(Napi::Env env, Napi::Object exports) {
  exports.Set("loraGeometry", Napi::Function::New(env, LoraGeometry, "loraGeometry"));
  exports.Set("loraMaterialize", Napi::Function::New(env, LoraMaterialize, "loraMaterialize"));
  exports.Set("loraMaterializeAsync", Napi::Function::New(env, LoraMaterializeAsync, "loraMaterializeAsync"));
  exports.Set("loraMerge", Napi::Function::New(env, LoraMerge, "loraMerge"));
}

}  // namespace geoedit_binding
