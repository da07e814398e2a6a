// The core's side of the CUDA backend: finds and dlopen()s the plugin geoedit_cuda.so only
// when CUDA is asked for or probed, checks its ABI version, and turns its C status codes into
// geoedit::Error. Plain C++: no CUDA headers, no link-time dependency on CUDA.
#include "geoedit/cuda.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "geoedit/cuda_abi.h"
#include "core/lora.h"
#include "core/preserve.h"

namespace geoedit {

namespace {

struct Plugin {
  void* handle = nullptr;
  std::string path;
  geoedit_cuda_probe_fn probe = nullptr;
  geoedit_cuda_run_edit_fn run_edit = nullptr;
  geoedit_cuda_lora_geometry_fn lora = nullptr;
  geoedit_cuda_bench_fn bench = nullptr;
  geoedit_cuda_linalg_probe_fn linalg_probe = nullptr;
  geoedit_cuda_preserve_rows_fn preserve_rows = nullptr;
  geoedit_cuda_spd_solve_fn spd_solve = nullptr;
};

std::mutex g_mu;
Plugin g_plugin;           // loaded once, never unloaded (the static CUDA runtime stays alive)
bool g_have_status = false;
CudaStatus g_status;

bool file_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The directory of the shared object this code is linked into (the addon .node).
std::string module_dir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&module_dir), &info) && info.dli_fname) {
    std::string f(info.dli_fname);
    const size_t s = f.rfind('/');
    if (s != std::string::npos) return f.substr(0, s);
    return ".";
  }
  return ".";
}

CudaStatus probe_locked(bool refresh) {
  CudaStatus st;
  st.tried = cuda_plugin_candidates();
  for (const auto& p : st.tried)
    if (file_exists(p)) { st.plugin_path = p; break; }
  if (st.plugin_path.empty()) {
    std::ostringstream os;
    os << "plugin missing: no geoedit_cuda.so was found (looked at ";
    for (size_t i = 0; i < st.tried.size(); ++i) os << (i ? ", " : "") << st.tried[i];
    os << "); this is a CPU-only build. Rebuild with the CUDA toolkit (nvcc) on PATH to build the plugin";
    st.kind = "plugin-missing";
    st.reason = os.str();
    return st;
  }
  // The plugin links the CUDA runtime statically; the runtime needs the driver library at run time.
  if (!std::getenv("GEOEDIT_CUDA_SKIP_DRIVER_CHECK")) {
    void* drv = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!drv) {
      const char* e = dlerror();
      st.kind = "no-driver";
      st.reason = std::string("no driver: the NVIDIA driver library libcuda.so.1 could not be loaded (") +
                  (e ? e : "unknown dlopen error") + "); install the NVIDIA driver to use the GPU";
      return st;
    }
    // Kept loaded: the plugin's runtime would load it again anyway.
  }
  if (!g_plugin.handle || (refresh && g_plugin.path != st.plugin_path)) {
    dlerror();
    void* h = dlopen(st.plugin_path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = dlerror();
      st.kind = "plugin-load";
      st.reason = "plugin failed to load: dlopen(" + st.plugin_path + ") failed: " + (e ? e : "unknown error");
      return st;
    }
    auto ver = reinterpret_cast<geoedit_cuda_abi_version_fn>(dlsym(h, "geoedit_cuda_abi_version"));
    Plugin p;
    p.handle = h;
    p.path = st.plugin_path;
    p.probe = reinterpret_cast<geoedit_cuda_probe_fn>(dlsym(h, "geoedit_cuda_probe"));
    p.run_edit = reinterpret_cast<geoedit_cuda_run_edit_fn>(dlsym(h, "geoedit_cuda_run_edit"));
    p.lora = reinterpret_cast<geoedit_cuda_lora_geometry_fn>(dlsym(h, "geoedit_cuda_lora_geometry"));
    p.bench = reinterpret_cast<geoedit_cuda_bench_fn>(dlsym(h, "geoedit_cuda_bench"));
    p.linalg_probe = reinterpret_cast<geoedit_cuda_linalg_probe_fn>(dlsym(h, "geoedit_cuda_linalg_probe"));
    p.preserve_rows = reinterpret_cast<geoedit_cuda_preserve_rows_fn>(dlsym(h, "geoedit_cuda_preserve_rows"));
    p.spd_solve = reinterpret_cast<geoedit_cuda_spd_solve_fn>(dlsym(h, "geoedit_cuda_spd_solve"));
    if (!ver || !p.probe || !p.run_edit || !p.lora || !p.bench || !p.linalg_probe || !p.preserve_rows || !p.spd_solve) {
      st.kind = "plugin-load";
      st.reason = "plugin failed to load: " + st.plugin_path + " does not export the geoedit CUDA ABI functions";
      return st;
    }
    const int v = ver();
    if (v != GEOEDIT_CUDA_ABI_VERSION) {
      st.kind = "plugin-load";
      st.reason = "plugin failed to load: " + st.plugin_path + " has ABI version " + std::to_string(v) +
                  " but this addon needs version " + std::to_string(GEOEDIT_CUDA_ABI_VERSION) +
                  " (the plugin and the addon come from different builds)";
      return st;
    }
    g_plugin = p;  // the previous handle, if any, stays open
  }
  geoedit_cuda_device dev;
  std::memset(&dev, 0, sizeof dev);
  char why[1024] = {0};
  const int rc = g_plugin.probe(&dev, why, sizeof why);
  st.device.name = dev.name;
  st.device.total_memory = dev.total_memory;
  st.device.cc_major = dev.cc_major;
  st.device.cc_minor = dev.cc_minor;
  st.device.driver_version = dev.driver_version;
  st.device.runtime_version = dev.runtime_version;
  st.device.device_count = dev.device_count;
  st.device.multiprocessors = dev.multiprocessors;
  st.device.device_index = dev.device_index;
  switch (rc) {
    case GEOEDIT_CUDA_OK: st.available = true; st.kind = "ok"; return st;
    case GEOEDIT_CUDA_NO_DRIVER: st.kind = "no-driver"; st.reason = std::string("no driver: ") + why; return st;
    case GEOEDIT_CUDA_NO_DEVICE: st.kind = "no-device"; st.reason = std::string("no device: ") + why; return st;
    case GEOEDIT_CUDA_TOO_OLD: st.kind = "too-old"; st.reason = std::string("too old: ") + why; return st;
    default: st.kind = "error"; st.reason = std::string("error: ") + why; return st;
  }
}

const Plugin& require_plugin() {
  const CudaStatus st = cuda_status();
  if (!st.available)
    throw Error(ErrorCode::CudaUnavailable, "backend 'cuda' was requested but CUDA is unavailable: " + st.reason);
  return g_plugin;
}

[[noreturn]] void throw_plugin_error(int rc, const char* err) {
  std::string msg = std::string("CUDA backend: ") + err;
  if (rc == GEOEDIT_CUDA_NO_DRIVER || rc == GEOEDIT_CUDA_NO_DEVICE || rc == GEOEDIT_CUDA_TOO_OLD)
    throw Error(ErrorCode::CudaUnavailable, msg);
  if (rc == GEOEDIT_CUDA_INVALID) throw Error(ErrorCode::InvalidArgument, err);
  throw Error(ErrorCode::Cuda, msg);
}

// $GEOEDIT_CUDA_MEMORY, read by the same rules as lib/options/size.ts (one meaning of a size
// everywhere): decimal KB/MB/GB/TB and K/M/G/T are powers of 1000, binary KiB/MiB/GiB/TiB and
// Ki/Mi/Gi/Ti powers of 1024, case-insensitive, a plain number is bytes; anything else is 0
// (the default). lib/ resolves the variable itself and passes the bytes, so this matters for C++
// callers only.
uint64_t parse_bytes(const char* s) {
  if (!s || !*s) return 0;
  char* end = nullptr;
  const double v = std::strtod(s, &end);
  if (!(v > 0) || !std::isfinite(v)) return 0;
  std::string unit;
  for (const char* p = end; p && *p; ++p) {
    if (*p == ' ') continue;
    unit += char(std::toupper(static_cast<unsigned char>(*p)));
  }
  static const struct { const char* name; double mul; } kUnits[] = {
      {"", 1}, {"B", 1}, {"K", 1e3}, {"KB", 1e3}, {"M", 1e6}, {"MB", 1e6}, {"G", 1e9}, {"GB", 1e9}, {"T", 1e12}, {"TB", 1e12},
      {"KI", 1024.0}, {"KIB", 1024.0}, {"MI", 1048576.0}, {"MIB", 1048576.0}, {"GI", 1073741824.0}, {"GIB", 1073741824.0},
      {"TI", 1099511627776.0}, {"TIB", 1099511627776.0},
  };
  for (const auto& u : kUnits)
    if (unit == u.name) return uint64_t(v * u.mul);
  return 0;
}

}  // namespace

std::vector<std::string> cuda_plugin_candidates() {
  if (const char* env = std::getenv("GEOEDIT_CUDA_PLUGIN"))
    if (*env) return {std::string(env)};
  const std::string d = module_dir();
  return {d + "/plugins/geoedit_cuda.so", d + "/cuda/geoedit_cuda.so", d + "/geoedit_cuda.so"};
}

CudaStatus cuda_status(bool refresh) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_have_status || refresh) {
    g_status = probe_locked(refresh);
    g_have_status = true;
  }
  return g_status;
}

void run_edit_cuda(const EditJob& job, const Params& params, const CudaRunOptions& opts) {
  validate_job(job, params);
  // The plugin's ABI has no task-vector input: it always forms a = old - base, b = new - base.
  // Refuse rather than compute something else (the LoRA path sends tau_given jobs to the CPU core).
  if (job.tau_given)
    throw Error(ErrorCode::InvalidArgument,
                "the CUDA backend does not take task vectors as old/new (tau_given); use backend 'cpu' for this job");
  const Plugin& P = require_plugin();
  // Preservation (SPEC §3 step 0): the projection with cuBLAS block by block (kPreserveCudaBlockRows
  // rows per side, one fixed GEMM shape), the row pipeline on the CPU pool. Without cuBLAS/cuSOLVER
  // (cuda_preserve_status().reason), or for the basis form, the whole edit runs on the CPU core.
  if (job.preserve) {
    if (job.preserve->form == Preserve::Form::Ridge && cuda_preserve_status().available) {
      const RowProjector proj = [](const Preserve& Op, const float* X, int64_t rows, float* Y) {
        cuda_preserve_rows(Op.id, Op.P.data(), Op.dim, X, rows, Y);
      };
      run_edit_projected(job, params, RunOptions(), proj, kPreserveCudaBlockRows);
    } else {
      run_edit(job, params, RunOptions());
    }
    return;
  }
  if (job.rows == 0) return;
  // Zero-column rows carry no data (no sums, no output bytes): the plugin refuses cols == 0, so
  // their per-row stats come from the CPU core, which applies the same rules (docs/cuda.md).
  if (job.cols == 0) {
    run_edit(job, params, RunOptions());
    return;
  }

  geoedit_cuda_job j;
  std::memset(&j, 0, sizeof j);
  j.rows = job.rows; j.cols = job.cols;
  j.base = job.base.data; j.base_dtype = int(job.base.dtype);
  j.old_ = job.old_.data; j.old_dtype = int(job.old_.dtype);
  j.new_ = job.new_.data; j.new_dtype = int(job.new_.dtype);
  j.imp_old = job.imp_old.data; j.imp_old_dtype = int(job.imp_old.dtype);
  j.imp_new = job.imp_new.data; j.imp_new_dtype = int(job.imp_new.dtype);
  j.c_new = job.c_new; j.c_old = job.c_old;
  j.out = job.out; j.out_dtype = int(job.out_dtype);
  j.stats = job.stats;

  geoedit_cuda_params p;
  p.strategy = int(params.strategy);
  p.scale = params.scale; p.kappa = params.kappa; p.band_degrees = params.band_degrees;
  p.keep_orthogonal = params.keep_orthogonal; p.fuse_aligned = params.fuse_aligned;
  p.forget_conflicting = params.forget_conflicting; p.lambda = params.lambda;
  p.density = params.density; p.temperature = params.temperature;
  p.allow_non_finite = params.allow_non_finite ? 1 : 0;
  p.allow_non_finite_output = params.allow_non_finite_output ? 1 : 0;

  geoedit_cuda_options o;
  o.memory_limit = opts.memory_limit ? opts.memory_limit : parse_bytes(std::getenv("GEOEDIT_CUDA_MEMORY"));
  o.streams = opts.streams;
  geoedit_cuda_run_info ri;
  std::memset(&ri, 0, sizeof ri);
  char err[1024] = {0};
  const int rc = P.run_edit(&j, &p, &o, &ri, err, sizeof err);
  if (rc == GEOEDIT_CUDA_OK) return;
  if (rc == GEOEDIT_CUDA_ROW_ERROR && ri.bad_row >= 0 && ri.bad_row < job.rows) {
    // Re-run the failing row on the CPU reference: it throws exactly the CPU's error (same
    // message naming tensor, row and column), so both backends report bad input identically.
    const int64_t r = ri.bad_row, n = job.cols;
    auto shift = [&](const View& v) {
      View w = v;
      if (v.data) w.data = static_cast<const char*>(v.data) + size_t(r) * size_t(n) * dtype_size(v.dtype);
      return w;
    };
    EditJob one;
    one.rows = 1; one.cols = n;
    one.base = shift(job.base); one.old_ = shift(job.old_); one.new_ = shift(job.new_);
    one.imp_old = shift(job.imp_old); one.imp_new = shift(job.imp_new);
    one.c_new = job.c_new ? job.c_new + r : nullptr;
    one.c_old = job.c_old ? job.c_old + r : nullptr;
    // With an output, so that an overflowing output (bad_kind 3) fails the same way.
    std::vector<char> scratch(size_t(n) * dtype_size(job.out_dtype));
    one.out_dtype = job.out_dtype;
    one.out = job.out ? scratch.data() : nullptr;
    one.tau_given = job.tau_given;
    one.tensor_name = job.tensor_name;
    one.row_offset = job.row_offset + r;
    RunOptions ro;
    ro.threads = 1;
    run_edit(one, params, ro);
    throw Error(ErrorCode::Internal, "the CUDA backend rejected row " + std::to_string(job.row_offset + r) +
                                         " but the CPU reference accepts it (please report this)");
  }
  throw_plugin_error(rc, err);
}

CudaPreserveStatus cuda_preserve_status(bool refresh) {
  static std::mutex mu;
  static bool have = false;
  static CudaPreserveStatus cached;
  const CudaStatus st = cuda_status();
  std::lock_guard<std::mutex> g(mu);
  if (have && !refresh) return cached;
  CudaPreserveStatus ps;
  if (!st.available) {
    ps.reason = "CUDA is unavailable: " + st.reason;
  } else {
    char why[1024] = {0};
    const int rc = g_plugin.linalg_probe(why, sizeof why);
    if (rc == GEOEDIT_CUDA_OK) {
      ps.available = true;
      ps.libs = why;
    } else {
      ps.reason = std::string("the projection runs on the CPU: ") + why;
    }
  }
  cached = ps;
  have = true;
  return cached;
}

void cuda_preserve_rows(uint64_t op_id, const float* P, int64_t d, const float* X, int64_t rows, float* Y) {
  const Plugin& pl = require_plugin();
  char err[1024] = {0};
  const int rc = pl.preserve_rows(op_id, P, d, X, rows, Y, err, sizeof err);
  if (rc != GEOEDIT_CUDA_OK) throw_plugin_error(rc, err);
}

int cuda_spd_solve(const double* A, int64_t d, double* B, int64_t nrhs) {
  const Plugin& pl = require_plugin();
  char err[1024] = {0};
  int info = 0;
  const int rc = pl.spd_solve(A, d, B, nrhs, &info, err, sizeof err);
  if (rc != GEOEDIT_CUDA_OK) throw_plugin_error(rc, err);
  return info;
}

// The CPU reference is the LoRA path's own factor-space geometry (native/core/lora.cc): tau = s*B*A
// is its canonical form with L = B [m, r] and R = A [r, n]; only dot/na/nb are asked for.
void lora_geometry_cpu(const LoraGeometryJob& J) {
  LoraJob l;
  l.rows = J.m;
  l.cols = J.n;
  l.old_.L = J.b_old; l.old_.R = J.a_old; l.old_.r = J.r_old; l.old_.scale = J.s_old;
  l.new_.L = J.b_new; l.new_.R = J.a_new; l.new_.r = J.r_new; l.new_.scale = J.s_new;
  l.dot = J.dot;
  l.stats.na = J.na;
  l.stats.nb = J.nb;
  l.tensor_name = "lora";
  Params p;
  p.allow_non_finite = true;  // geometry only: report the sums as they are
  run_lora_geometry(l, p);
}

void lora_geometry_cuda(const LoraGeometryJob& J) {
  const Plugin& P = require_plugin();
  geoedit_cuda_lora l;
  l.m = J.m; l.n = J.n; l.r_old = J.r_old; l.r_new = J.r_new;
  l.a_old = J.a_old; l.b_old = J.b_old; l.a_new = J.a_new; l.b_new = J.b_new;
  l.s_old = J.s_old; l.s_new = J.s_new;
  l.dot = J.dot; l.na = J.na; l.nb = J.nb;
  char err[1024] = {0};
  const int rc = P.lora(&l, err, sizeof err);
  if (rc != GEOEDIT_CUDA_OK) throw_plugin_error(rc, err);
}

CudaBenchResult cuda_bench(int64_t rows, int64_t cols, DType dtype, int reps, const Params& params, bool with_importance) {
  validate_params(params);
  const Plugin& P = require_plugin();
  geoedit_cuda_bench_spec s;
  std::memset(&s, 0, sizeof s);
  s.rows = rows; s.cols = cols; s.dtype = int(dtype); s.reps = reps;
  s.params.strategy = int(params.strategy);
  s.params.scale = params.scale; s.params.kappa = params.kappa; s.params.band_degrees = params.band_degrees;
  s.params.keep_orthogonal = params.keep_orthogonal; s.params.fuse_aligned = params.fuse_aligned;
  s.params.forget_conflicting = params.forget_conflicting; s.params.lambda = params.lambda;
  s.params.density = params.density; s.params.temperature = params.temperature;
  s.params.allow_non_finite = 1;
  s.with_importance = with_importance ? 1 : 0;
  geoedit_cuda_bench_result r;
  std::memset(&r, 0, sizeof r);
  char err[1024] = {0};
  const int rc = P.bench(&s, &r, err, sizeof err);
  if (rc != GEOEDIT_CUDA_OK) throw_plugin_error(rc, err);
  CudaBenchResult out;
  out.kernel_ms = r.kernel_ms; out.kernel_gbps = r.kernel_gbps; out.copy_gbps = r.copy_gbps; out.checksum = r.checksum;
  return out;
}

}  // namespace geoedit
