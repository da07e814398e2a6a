// stream(spec): the checkpoint data path (native/core/stream.h): edit / copy / convert tensors file
// to file in row blocks.
//   task: { kind, name, rows, cols, base, old, new, impOld?, impNew?, cNew?, cOld?, outFd, outOffset,
//           outDtype?, stats?, layout? (0 rows, 1 columns), groups? (columns: stored matrices),
//           outHash? (a handle from outputHash(): the output file's SHA-256 taken as it is written) }
//   spec: { tasks, params, threads?, blockBytes? (0: the backend's default), backend?, cudaMemoryLimit?,
//           ctl?: Float64Array(2 or 3) [bytesDone, cancel, taskIndex] }
//   -> Promise<(stats | null)[]> (stats: { cos, region, coefNew, coefOld, deltaSq, na, nb } for edit
//      and merged-LoRA tasks that asked for them; + dot for merged LoRA at density 1)
#include "common.h"

#include "core/stream.h"

namespace geoedit_binding {

namespace {

struct StreamBaton {
  std::vector<geoedit::StreamTask> tasks;
  geoedit::Params params;
  geoedit::RunOptions ro;
  size_t block_bytes = 0;
  geoedit::StreamControl ctl;
  geoedit::StreamBackend backend;
  Keep keep;
  std::vector<std::shared_ptr<geoedit::OrderedHash>> out_hashes;  // the tasks' outHash handles, held while the call runs
  // Preservation: spec.preserves[i] read on the JS thread, built in the worker before any task runs.
  std::vector<geoedit::PreserveSpec> pspecs;
  std::vector<geoedit::BlasChoice> pblas;         // per spec: the CPU linear algebra asked for
  std::vector<std::string> provider;              // per task: preserveProvider (set by run(), put on the JS thread)
  Napi::ObjectReference results;                  // the per-task result objects
  std::vector<std::shared_ptr<const geoedit::Preserve>> pres;
  std::vector<int> task_pres;                     // per task: index into pres, or -1
  std::vector<int> tau_from;                      // per task: the weight task whose preserved bias it edits, or -1
  std::vector<std::vector<float>> bias_tau;       // per task with a bias: [old rows, new rows] (native-owned)
  std::vector<geoedit::PreserveStats> pstats;     // per task
  std::vector<double*> energy;                    // per task: preserveEnergy (JS-owned) or null
  void run();
};

void StreamBaton::run() {
  // Every operator is built and checked against every task that uses it before any task runs:
  // bad statistics are an error naming the tensor with nothing written.
  pres.resize(pspecs.size());
  for (size_t k = 0; k < pspecs.size(); ++k) {
    geoedit::PreserveBuildOptions bo;
    bo.cols = -1;
    for (size_t i = 0; i < tasks.size(); ++i)
      if (task_pres[i] == int(k)) {
        if (bo.cols < 0) bo.cols = tasks[i].cols;
        bo.has_bias = bo.has_bias || tasks[i].bias_base.fd >= 0;
      }
    if (bo.cols < 0) continue;  // not used by any task
    bo.threads = ro.threads;
    bo.cuda = backend.cuda;
    bo.blas = pblas[k];
    pres[k] = geoedit::build_preserve(pspecs[k], bo);
  }
  for (size_t i = 0; i < tasks.size(); ++i) {
    geoedit::StreamTask& t = tasks[i];
    if (task_pres[i] >= 0) {
      t.preserve = pres[size_t(task_pres[i])].get();
      geoedit::check_preserve_fits(*t.preserve, t.cols, t.bias_base.fd >= 0, t.name);
      t.preserve_stats = &pstats[i];
      if (t.preserve->augmented()) {
        bias_tau[i].assign(size_t(2 * t.rows), 0.0f);
        t.bias_tau_old_out = bias_tau[i].data();
        t.bias_tau_new_out = bias_tau[i].data() + t.rows;
      }
    }
  }
  for (size_t i = 0; i < tasks.size(); ++i)
    if (tau_from[i] >= 0) {
      const size_t w = size_t(tau_from[i]);
      if (bias_tau[w].empty() || size_t(tasks[i].rows * tasks[i].cols) != bias_tau[w].size() / 2)
        throw geoedit::Error(geoedit::ErrorCode::InvalidArgument,
                             "task '" + tasks[i].name + "' edits the preserved bias of task '" + tasks[w].name +
                                 "', which has no augmented statistics or another length",
                             geoedit::tensor_details(tasks[i].name));
      tasks[i].tau_old_mem = bias_tau[w].data();
      tasks[i].tau_new_mem = bias_tau[w].data() + tasks[w].rows;
    }
  geoedit::run_stream(tasks, params, ro, block_bytes, ctl, backend);
  const geoedit::SimdLevel level = ro.simd >= 0 ? geoedit::SimdLevel(ro.simd) : geoedit::active_simd();
  provider.assign(tasks.size(), std::string());
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (energy[i]) put_preserve_energy(pstats[i], energy[i]);
    if (tasks[i].preserve) provider[i] = geoedit::preserve_provider(*tasks[i].preserve, level, &pstats[i]);
  }
}

// { fd, offset, dtype, file? }
geoedit::StreamSrc src_of(Napi::Object o, const char* key) {
  geoedit::StreamSrc s;
  Napi::Value v = o.Get(key);
  if (!v.IsObject()) throw_type(o.Env(), std::string("Expected a source object for ") + key);
  Napi::Object so = v.As<Napi::Object>();
  s.fd = int(num(so, "fd", -1));
  s.offset = uint64_t(num(so, "offset", 0));
  s.dtype = dtype_of(so, "dtype");
  s.file = str(so, "file");
  return s;
}

void read_ctl(Napi::Object spec, StreamBaton& b) {
  Napi::Value cv = spec.Get("ctl");
  if (!cv.IsTypedArray()) return;
  Napi::TypedArray ta = cv.As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_float64_array || ta.ElementLength() < 2) return;
  char* p;
  size_t bytes;
  typed_bytes(ta, "ctl", &p, &bytes);
  double* d = reinterpret_cast<double*>(p);
  // Shared with the caller while the worker runs (progress, cancel): never copied. lib/ creates it
  // and never hands it out; pinned (marked untransferable) when the transfer guard is installed.
  pin_in_place(ta);
  b.keep.hold(ta);
  b.ctl.bytes_done = d;
  b.ctl.cancel = d + 1;
  if (ta.ElementLength() >= 3) b.ctl.task_index = d + 2;
}

// One task; its stats object (or null) goes to results[i].
geoedit::StreamTask read_task(Napi::Env env, Napi::Object to, StreamBaton& b, Napi::Array results, uint32_t i) {
  geoedit::StreamTask t;
  const int kind = int(num(to, "kind", 0));
  if (kind < 0 || kind > 3) throw make_error(env, "ERR_INVALID_OPTION", "unknown task kind");
  t.kind = geoedit::StreamTask::Kind(kind);
  t.name = str(to, "name");
  t.rows = int64_t(num(to, "rows", 0));
  t.cols = int64_t(num(to, "cols", 0));
  t.copy_bytes = uint64_t(num(to, "copyBytes", 0));
  if (t.rows < 0 || t.cols < 0) throw make_error(env, "ERR_INVALID_OPTION", "rows and cols must be >= 0");
  t.base = src_of(to, "base");
  results.Set(i, env.Null());
  const bool edit = t.kind == geoedit::StreamTask::Edit, lora = t.kind == geoedit::StreamTask::LoraMerge;
  if (edit) {
    if (!to.Get("tauFrom").IsNumber()) {  // a tauFrom task reads its task vectors from memory
      t.old_ = src_of(to, "old");
      t.new_ = src_of(to, "new");
    }
    if (to.Get("impOld").IsObject()) {
      t.imp_old = src_of(to, "impOld");
      t.imp_new = src_of(to, "impNew");
    }
    // layout: 0 rows (default), 1 columns ([groups ×] [cols, rows/groups] stored; neurons are columns)
    const int layout = int(num(to, "layout", 0));
    t.groups = int64_t(num(to, "groups", 1));
    if (layout < 0 || layout > 1) throw make_error(env, "ERR_INVALID_OPTION", "unknown task layout for tensor '" + t.name + "'");
    if (t.groups < 1 || t.rows % t.groups != 0)
      throw make_error(env, "ERR_INVALID_OPTION", "task groups must be >= 1 and divide rows (tensor '" + t.name + "')");
    t.layout = geoedit::StreamTask::Layout(layout);
  }
  if (lora) {
    // { rows: m, cols: n (tau's neuron view), base, loraOld, loraNew, transposed, cNew?, cOld?, stats? }
    t.lora_old = read_lora_side(to, "loraOld", t.rows, t.cols, b.keep);
    t.lora_new = read_lora_side(to, "loraNew", t.rows, t.cols, b.keep);
    t.transposed = to.Get("transposed").ToBoolean().Value();
  }
  if (edit || lora) {
    const size_t r = size_t(t.rows);
    t.c_new = static_cast<const float*>(data_of(to, "cNew", r * 4, b.keep, true));
    t.c_old = static_cast<const float*>(data_of(to, "cOld", r * 4, b.keep, true));
    if (b.params.strategy == geoedit::Strategy::Custom && (!t.c_new || !t.c_old))
      throw make_error(env, "ERR_COEFFICIENTS", "strategy 'custom' needs cNew and cOld for tensor '" + t.name + "'",
                       geoedit::tensor_details(t.name));
    const bool want_stats = to.Get("stats").ToBoolean().Value();
    // preserve: an index into spec.preserves; biasBase/biasOld/biasNew: the augmented form's bias
    // sources; tauFrom: edit this (bias) task from task tauFrom's preserved bias task vectors.
    const int pi = edit && to.Get("preserve").IsNumber() ? int(num(to, "preserve", -1)) : -1;
    if (pi >= int(b.pspecs.size())) throw make_error(env, "ERR_INVALID_OPTION", "task '" + t.name + "': preserve index out of range");
    if (lora && (pi >= 0 || to.Get("tauFrom").IsNumber()))
      throw make_error(env, "ERR_INVALID_OPTION", "task '" + t.name + "': a LoRA merge task takes preserved factors (A·P), not preserve/tauFrom");
    b.task_pres[i] = pi;
    if (pi >= 0 && to.Get("biasBase").IsObject()) {
      t.bias_base = src_of(to, "biasBase");
      t.bias_old = src_of(to, "biasOld");
      t.bias_new = src_of(to, "biasNew");
    }
    const int tf = edit && to.Get("tauFrom").IsNumber() ? int(num(to, "tauFrom", -1)) : -1;
    if (tf >= int(i)) throw make_error(env, "ERR_INVALID_OPTION", "task '" + t.name + "': tauFrom must name an earlier task");
    b.tau_from[i] = tf;
    if (want_stats || pi >= 0) {
      Napi::Object st = Napi::Object::New(env);
      if (want_stats) {
        t.stats = alloc_row_stats(env, st, r);
        if (lora && b.params.density == 1.0) t.dot = alloc_array<double>(env, st, "dot", r);  // factor-space geometry
      }
      if (pi >= 0) b.energy[i] = alloc_preserve_energy(env, st);
      results.Set(i, st);
    }
  }
  t.out_fd = int(num(to, "outFd", -1));
  t.out_offset = uint64_t(num(to, "outOffset", 0));
  Napi::Value hv = to.Get("outHash");
  if (!hv.IsUndefined() && !hv.IsNull()) {
    b.out_hashes.push_back(output_hash_of(env, hv, "task '" + t.name + "' outHash"));
    t.out_hash = b.out_hashes.back().get();
  }
  if (t.out_fd >= 0 || edit || lora)
    t.out_dtype = to.Get("outDtype").IsString() ? dtype_of(to, "outDtype") : t.base.dtype;
  return t;
}

Napi::Value Stream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object spec = spec_arg(info, "a stream specification object");
  auto b = std::make_shared<StreamBaton>();
  b->keep.async = true;
  Napi::Value pv = spec.Get("params");
  if (pv.IsObject()) read_params(env, pv.As<Napi::Object>(), b->params);
  call_sync(env, "validating options", [&]() { geoedit::validate_params(b->params); });
  b->ro = read_run_options(spec);
  b->block_bytes = size_t(num(spec, "blockBytes", 0));
  read_backend(spec, &b->backend.cuda, &b->backend.cuda_opts);
  read_ctl(spec, *b);
  Napi::Value tv = spec.Get("tasks");
  if (!tv.IsArray()) throw_type(env, "Expected an array of tasks");
  Napi::Array tasks = tv.As<Napi::Array>();
  Napi::Array results = Napi::Array::New(env, tasks.Length());
  Napi::Value pv2 = spec.Get("preserves");
  if (pv2.IsArray()) {
    Napi::Array pa = pv2.As<Napi::Array>();
    b->pspecs.resize(pa.Length());
    b->pblas.assign(pa.Length(), geoedit::BlasChoice::Default);
    for (uint32_t k = 0; k < pa.Length(); ++k)
      read_preserve_spec(pa.Get(k), "preserves[" + std::to_string(k) + "]", &b->pspecs[k], &b->pblas[k], b->keep);
  }
  b->task_pres.assign(tasks.Length(), -1);
  b->tau_from.assign(tasks.Length(), -1);
  b->bias_tau.resize(tasks.Length());
  b->pstats.resize(tasks.Length());
  b->energy.assign(tasks.Length(), nullptr);
  for (uint32_t i = 0; i < tasks.Length(); ++i) {
    Napi::Value v = tasks.Get(i);
    if (!v.IsObject()) throw_type(env, "Expected a task object");
    b->tasks.push_back(read_task(env, v.As<Napi::Object>(), *b, results, i));
  }
  b->results = Napi::Persistent(results.As<Napi::Object>());
  return PromiseWorker::queue(env, "geoedit:stream", "streaming a checkpoint",
                              [b]() { b->run(); }, b,
                              results.As<Napi::Object>(), [b](Napi::Env) -> Napi::Value {
                                Napi::Object res = b->results.Value();
                                for (size_t i = 0; i < b->provider.size(); ++i)
                                  if (!b->provider[i].empty() && res.Get(uint32_t(i)).IsObject())
                                    put_preserve_provider(res.Get(uint32_t(i)).As<Napi::Object>(), b->provider[i]);
                                return res;
                              });
}

}  // namespace

void register_stream(Napi::Env env, Napi::Object exports) {
  exports.Set("stream", Napi::Function::New(env, Stream, "stream"));
}

}  // namespace geoedit_binding
