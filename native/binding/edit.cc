// edit(spec) / editSync(spec): one tensor (or a block of its rows) in memory, SPEC §3.
//   spec: { rows, cols, base, baseDtype, old, oldDtype, new, newDtype, impOld?, impOldDtype?,
//           impNew?, impNewDtype?, cNew?, cOld?, outDtype, wantOut, outData?, tensorName?,
//           rowOffset?, tauGiven?, params, threads?, simd?, backend?, cudaMemoryLimit? }
//   -> { out?, cos, region, coefNew, coefOld, deltaSq, na, nb }
#include "common.h"
#include "outpool.h"

#include <cstring>

namespace geoedit_binding {

namespace {

// A fresh output (no outData): pooled, resident memory when large (outpool.cc), else a new array.
// *populate: bytes of a new mapping to fault in before the edit (populate_output), else 0.
void* fresh_output(Napi::Env env, Napi::Object result, DType dt, size_t count, size_t* populate) {
  const bool f32 = dt == DType::F32;
  napi_value arr;
  void* data = nullptr;
  if (pooled_output(env, f32 ? napi_float32_array : napi_uint16_array, count, f32 ? 4 : 2, &arr, &data, populate)) {
    result.Set("out", Napi::Value(env, arr));
    return data;
  }
  if (f32) return alloc_array<float>(env, result, "out", count);
  return alloc_array<uint16_t>(env, result, "out", count);
}

// The job read on the JS thread; run off it (edit) or on it (editSync).
struct EditBaton {
  geoedit::EditJob job;
  geoedit::Params params;
  geoedit::RunOptions ro;
  bool cuda = false;  // backend 'cuda' (chosen in lib/backend.ts)
  geoedit::CudaRunOptions cuda_opts;
  Keep keep;
  Napi::ObjectReference result;
  Napi::ObjectReference out_data;  // outData to copy the output into when the edit is done
  size_t out_bytes = 0;
  size_t populate = 0;  // a fresh output on a new mapping: its pages are faulted in first (outpool.h)
  // Preservation (SPEC §3 step 0): the spec read here, the operator built in run() (off the JS thread).
  bool has_preserve = false;
  geoedit::PreserveSpec pspec;
  geoedit::BlasChoice blas = geoedit::BlasChoice::Default;
  std::string provider;  // set by run(), put on the result on the JS thread
  geoedit::PreserveBias bias;
  bool has_bias = false;
  geoedit::PreserveStats pstats;
  double* energy = nullptr;
  void run() {
    std::shared_ptr<const geoedit::Preserve> P;
    if (has_preserve) {
      geoedit::PreserveBuildOptions bo;
      bo.cols = job.cols;
      bo.has_bias = has_bias;
      bo.threads = ro.threads;
      bo.simd = ro.simd;
      bo.cuda = cuda;
      bo.blas = blas;
      P = geoedit::build_preserve(pspec, bo);
      job.preserve = P.get();
      job.preserve_bias = has_bias ? &bias : nullptr;
      job.preserve_stats = &pstats;
    }
    if (populate) populate_output(job.out, populate, ro.threads);
    if (cuda) geoedit::run_edit_cuda(job, params, cuda_opts);
    else geoedit::run_edit(job, params, ro);
    if (energy) geoedit_binding::put_preserve_energy(pstats, energy);
    if (P) provider = geoedit::preserve_provider(*P, ro.simd >= 0 ? geoedit::SimdLevel(ro.simd) : geoedit::active_simd(), &pstats);
    job.preserve = nullptr;
  }
};

std::shared_ptr<EditBaton> read_edit(const Napi::CallbackInfo& info, bool async) {
  Napi::Env env = info.Env();
  Napi::Object spec = spec_arg(info, "an edit specification object");
  auto b = std::make_shared<EditBaton>();
  b->keep.async = async;
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
  job.tensor_name = str(spec, "tensorName");
  job.row_offset = int64_t(num(spec, "rowOffset", 0));
  job.tau_given = spec.Get("tauGiven").ToBoolean().Value();

  read_params_into(env, spec, b->params);
  read_backend(spec, &b->cuda, &b->cuda_opts);
  b->ro = read_run_options(spec);
  b->ro.simd = int(num(spec, "simd", -1));
  if (b->ro.simd > 2) b->ro.simd = 2;

  // Outputs: JS-owned arrays allocated here, written by the worker.
  Napi::Object result = Napi::Object::New(env);
  if (spec.Get("wantOut").ToBoolean().Value()) {
    Napi::Value od = spec.Get("outData");
    const size_t out_bytes = count * geoedit::dtype_size(job.out_dtype);
    if (od.IsTypedArray() && (!async || pin_in_place(od.As<Napi::TypedArray>()))) {
      // A caller-provided output (reused across calls: no fresh pages to fault in and zero).
      Keep direct;  // written in place: never a copy
      job.out = const_cast<void*>(data_of(spec, "outData", out_bytes, direct));
      b->keep.hold(od.As<Napi::Object>());
      result.Set("out", od);
    } else if (od.IsTypedArray()) {
      // An async call whose outData could be detached meanwhile: written to the call's own
      // array, copied into outData when the edit is done (finish_edit).
      Keep check;
      data_of(spec, "outData", out_bytes, check);  // the length check, now
      b->out_data = Napi::Persistent(od.As<Napi::Object>());
      b->out_bytes = out_bytes;
      job.out = out_bytes ? static_cast<void*>(alloc_array<uint8_t>(env, result, "out", out_bytes)) : nullptr;
    } else {
      job.out = fresh_output(env, result, job.out_dtype, count, &b->populate);
    }
  }
  job.stats = alloc_row_stats(env, result, size_t(job.rows));
  // preserve: { cov, … } (preserve.cc); the augmented form's bias: biasBase/biasOld/biasNew (+ dtypes),
  // whose preserved task vectors come back as biasTauOld/biasTauNew (Float32Array, rows).
  b->has_preserve = read_preserve_spec(spec.Get("preserve"), job.tensor_name.empty() ? "tensor" : job.tensor_name, &b->pspec, &b->blas, b->keep);
  if (b->has_preserve) {
    if (!spec.Get("biasBase").IsUndefined()) {
      b->has_bias = true;
      geoedit::View* v[3] = {&b->bias.base, &b->bias.old_, &b->bias.new_};
      const char* keys[3] = {"biasBase", "biasOld", "biasNew"};
      const char* dkeys[3] = {"biasBaseDtype", "biasOldDtype", "biasNewDtype"};
      for (int q = 0; q < 3; ++q) {
        v[q]->dtype = spec.Get(dkeys[q]).IsString() ? dtype_of(spec, dkeys[q]) : DType::F32;
        v[q]->data = data_of(spec, keys[q], size_t(job.rows) * geoedit::dtype_size(v[q]->dtype), b->keep);
      }
      b->bias.tau_old_out = alloc_array<float>(env, result, "biasTauOld", size_t(job.rows));
      b->bias.tau_new_out = alloc_array<float>(env, result, "biasTauNew", size_t(job.rows));
    }
    b->energy = alloc_preserve_energy(env, result);
  }
  b->result = Napi::Persistent(result);
  return b;
}

Napi::Value EditSync(const Napi::CallbackInfo& info) {
  std::shared_ptr<EditBaton> b = read_edit(info, false);
  call_sync(info.Env(), "editing", [&]() { b->run(); });
  put_preserve_provider(b->result.Value(), b->provider);
  return b->result.Value();
}

// The result; when the output went to the call's own array, copied into outData first.
Napi::Value finish_edit(Napi::Env env, EditBaton& b) {
  Napi::Object result = b.result.Value();
  put_preserve_provider(result, b.provider);
  if (b.out_data.IsEmpty()) return result;
  Napi::Object od = b.out_data.Value();
  char* dst;
  size_t have;
  typed_bytes(od.As<Napi::TypedArray>(), "outData", &dst, &have);
  if (have < b.out_bytes)
    throw make_error(env, "ERR_DATA_LENGTH", "outData was detached or shrunk while the edit ran (" + std::to_string(have) +
                                                 " bytes, " + std::to_string(b.out_bytes) + " needed); nothing was written to it");
  if (b.out_bytes) {
    char* src;
    size_t n;
    typed_bytes(result.Get("out").As<Napi::TypedArray>(), "out", &src, &n);
    std::memcpy(dst, src, b.out_bytes);
  }
  result.Set("out", od);
  return result;
}

Napi::Value Edit(const Napi::CallbackInfo& info) {
  std::shared_ptr<EditBaton> b = read_edit(info, true);
  return PromiseWorker::queue(info.Env(), "geoedit:edit", "editing", [b]() { b->run(); }, b, b->result.Value(),
                              [b](Napi::Env env) { return finish_edit(env, *b); });
}

}  // namespace

void register_edit(Napi::Env env, Napi::Object exports) {
  exports.Set("edit", Napi::Function::New(env, Edit, "edit"));
  exports.Set("editSync", Napi::Function::New(env, EditSync, "editSync"));
}

}  // namespace geoedit_binding
