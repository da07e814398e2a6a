// geoedit_cuda.so: the CUDA plugin. Exports the plain C ABI of geoedit/cuda_abi.h; the core
// dlopen()s it only when CUDA is asked for or probed. Links the CUDA runtime statically.
//
// run_edit streams a block of host rows through the device in chunks: each of >= 2 slots owns a
// stream, pinned input/output staging and device buffers; while the device works on chunk c,
// the host stages chunk c+1 into the other slot's pinned buffers, so host staging, H2D copies,
// kernels and D2H copies of different chunks overlap. Device memory is bounded by
// memory_limit (all slots together).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../core/rules.h"
#include "geoedit/cuda_abi.h"
#include "kernels.h"

#define GEOEDIT_CUDA_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using geoedit::DType;
using geoedit::Params;
using geoedit::Strategy;
namespace gc = geoedit::cuda;

constexpr int kMinMajor = 8;

void set_msg(char* buf, size_t len, const std::string& s) {
  if (!buf || len == 0) return;
  std::snprintf(buf, len, "%s", s.c_str());
}

size_t dsize(int dt) { return dt == GEOEDIT_CUDA_F32 ? 4 : 2; }

size_t align256(size_t x) { return (x + 255) & ~size_t(255); }

struct Failure {
  int code;
  std::string msg;
};

// Throws Failure on a CUDA error (caught at the ABI boundary: nothing crosses it as a C++ exception).
void ck(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  const int code = (e == cudaErrorMemoryAllocation) ? GEOEDIT_CUDA_OUT_OF_MEMORY
                   : (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice) ? GEOEDIT_CUDA_NO_DRIVER
                                                                                   : GEOEDIT_CUDA_ERROR;
  throw Failure{code, std::string(what) + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")"};
}

Params to_params(const geoedit_cuda_params& q) {
  Params p;
  p.strategy = Strategy(q.strategy);
  p.scale = q.scale;
  p.kappa = q.kappa;
  p.band_degrees = q.band_degrees;
  p.keep_orthogonal = q.keep_orthogonal;
  p.fuse_aligned = q.fuse_aligned;
  p.forget_conflicting = q.forget_conflicting;
  p.lambda = q.lambda;
  p.density = q.density;
  p.temperature = q.temperature;
  p.allow_non_finite = q.allow_non_finite != 0;
  p.allow_non_finite_output = q.allow_non_finite_output != 0;
  return p;
}

struct DeviceCaps {
  int device = 0;
  int sms = 0;
  int smem_optin = 0;
};

DeviceCaps device_caps() {
  DeviceCaps c;
  ck(cudaGetDevice(&c.device), "cudaGetDevice");
  ck(cudaDeviceGetAttribute(&c.sms, cudaDevAttrMultiProcessorCount, c.device), "cudaDeviceGetAttribute");
  ck(cudaDeviceGetAttribute(&c.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, c.device), "cudaDeviceGetAttribute");
  return c;
}

// ---- buffers reused across calls (one call at a time holds them) -----------------------------
struct Slot {
  cudaStream_t stream = nullptr;
  char* dev = nullptr;
  size_t dev_cap = 0;
  char* pin = nullptr;
  size_t pin_cap = 0;
  int64_t pending_r0 = -1, pending_rows = 0;
};

std::mutex g_mu;
std::vector<Slot> g_slots;

void ensure_slot(Slot& s, size_t dev_bytes, size_t pin_bytes) {
  if (!s.stream) ck(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  if (s.dev_cap < dev_bytes) {
    if (s.dev) cudaFree(s.dev);
    s.dev = nullptr;
    s.dev_cap = 0;
    ck(cudaMalloc(&s.dev, dev_bytes), "cudaMalloc (device chunk buffers)");
    s.dev_cap = dev_bytes;
  }
  if (s.pin_cap < pin_bytes) {
    if (s.pin) cudaFreeHost(s.pin);
    s.pin = nullptr;
    s.pin_cap = 0;
    ck(cudaHostAlloc(reinterpret_cast<void**>(&s.pin), pin_bytes, cudaHostAllocDefault), "cudaHostAlloc (pinned staging)");
    s.pin_cap = pin_bytes;
  }
}

// Offsets of every array of one chunk inside a slot's buffers (same layout on host and device).
struct Layout {
  size_t base = 0, old_ = 0, new_ = 0, imp_old = 0, imp_new = 0, c_new = 0, c_old = 0;  // inputs
  size_t in_end = 0;
  size_t out = 0, cos = 0, na = 0, nb = 0, delta = 0, cn = 0, co = 0, status = 0, region = 0;  // outputs
  size_t out_end = 0;
  size_t ws = 0, dev_end = 0;  // device only
};

Layout plan_layout(const geoedit_cuda_job& J, int64_t rows, size_t ws_floats) {
  Layout L;
  const size_t n = size_t(J.cols), r = size_t(rows);
  size_t o = 0;
  auto put = [&o](size_t bytes) { const size_t at = o; o = align256(o + bytes); return at; };
  L.base = put(r * n * dsize(J.base_dtype));
  L.old_ = put(r * n * dsize(J.old_dtype));
  L.new_ = put(r * n * dsize(J.new_dtype));
  if (J.imp_old) {
    L.imp_old = put(r * n * dsize(J.imp_old_dtype));
    L.imp_new = put(r * n * dsize(J.imp_new_dtype));
  }
  if (J.c_new) {
    L.c_new = put(r * 4);
    L.c_old = put(r * 4);
  }
  L.in_end = o;
  L.out = put(J.out ? r * n * dsize(J.out_dtype) : 0);
  L.cos = put(r * 8);
  L.na = put(r * 8);
  L.nb = put(r * 8);
  L.delta = put(r * 8);
  L.cn = put(r * 4);
  L.co = put(r * 4);
  L.status = put(r * 4);
  L.region = put(r);
  L.out_end = o;
  L.ws = put(ws_floats * 4);
  L.dev_end = o;
  return L;
}

// Host staging copies (caller memory <-> pinned buffers) on several threads: one core's memcpy
// (~5-10 GB/s, less when it page-faults a mapped file in) is slower than the PCIe link, and it is
// on the critical path of every chunk. GEOEDIT_CUDA_COPY_THREADS sets the count (1 = serial);
// default: half the hardware threads, at most 8. Pieces below 4 MiB stay on the calling thread.
int copy_threads() {
  static const int n = [] {
    const char* e = std::getenv("GEOEDIT_CUDA_COPY_THREADS");
    if (e && *e) return std::max(1, std::min(64, std::atoi(e)));
    const unsigned h = std::thread::hardware_concurrency();
    return int(std::max(1u, std::min(8u, h / 2)));
  }();
  return n;
}

void par_copy(char* dst, const char* src, size_t bytes) {
  const size_t kMin = size_t(4) << 20;
  const int t = int(std::min<size_t>(size_t(copy_threads()), std::max<size_t>(1, bytes / kMin)));
  if (t <= 1) {
    std::memcpy(dst, src, bytes);
    return;
  }
  const size_t per = ((bytes + size_t(t) - 1) / size_t(t) + 4095) & ~size_t(4095);
  std::vector<std::thread> pool;
  pool.reserve(size_t(t - 1));
  for (int i = 1; i < t; ++i) {
    const size_t o = size_t(i) * per;
    if (o >= bytes) break;
    const size_t len = std::min(per, bytes - o);
    pool.emplace_back([=]() { std::memcpy(dst + o, src + o, len); });
  }
  std::memcpy(dst, src, std::min(per, bytes));
  for (auto& th : pool) th.join();
}

void copy_rows_in(const geoedit_cuda_job& J, const Layout& L, char* pin, int64_t r0, int64_t nr) {
  const size_t n = size_t(J.cols);
  auto cp = [&](size_t at, const void* src, int dt) {
    par_copy(pin + at, static_cast<const char*>(src) + size_t(r0) * n * dsize(dt), size_t(nr) * n * dsize(dt));
  };
  cp(L.base, J.base, J.base_dtype);
  cp(L.old_, J.old_, J.old_dtype);
  cp(L.new_, J.new_, J.new_dtype);
  if (J.imp_old) {
    cp(L.imp_old, J.imp_old, J.imp_old_dtype);
    cp(L.imp_new, J.imp_new, J.imp_new_dtype);
  }
  if (J.c_new) {
    std::memcpy(pin + L.c_new, J.c_new + r0, size_t(nr) * 4);
    std::memcpy(pin + L.c_old, J.c_old + r0, size_t(nr) * 4);
  }
}

void copy_rows_out(const geoedit_cuda_job& J, const Layout& L, const char* pin, int64_t r0, int64_t nr,
                   std::vector<int>& status) {
  const size_t n = size_t(J.cols), r = size_t(nr);
  if (J.out) par_copy(static_cast<char*>(J.out) + size_t(r0) * n * dsize(J.out_dtype), pin + L.out, r * n * dsize(J.out_dtype));
  const geoedit_row_stats& S = J.stats;
  if (S.cos) std::memcpy(S.cos + r0, pin + L.cos, r * 8);
  if (S.na) std::memcpy(S.na + r0, pin + L.na, r * 8);
  if (S.nb) std::memcpy(S.nb + r0, pin + L.nb, r * 8);
  if (S.delta_sq) std::memcpy(S.delta_sq + r0, pin + L.delta, r * 8);
  if (S.coef_new) std::memcpy(S.coef_new + r0, pin + L.cn, r * 4);
  if (S.coef_old) std::memcpy(S.coef_old + r0, pin + L.co, r * 4);
  if (S.region) std::memcpy(S.region + r0, pin + L.region, r);
  std::memcpy(status.data() + r0, pin + L.status, r * 4);
}

uint64_t default_memory_limit() {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return uint64_t(1) << 30;
  // Half of what is free, at most 4 GiB: enough to keep the copy engines and the SMs busy.
  return std::min<uint64_t>(uint64_t(free_b) / 2, uint64_t(4) << 30);
}

int run_edit_impl(const geoedit_cuda_job& J, const geoedit_cuda_params& q, const geoedit_cuda_options* opts,
                  geoedit_cuda_run_info* info) {
  const auto t0 = std::chrono::steady_clock::now();
  const Params P = to_params(q);
  const int64_t n = J.cols;
  if (J.rows <= 0) return GEOEDIT_CUDA_OK;
  if (n < 0 || !J.base || !J.old_ || !J.new_) throw Failure{GEOEDIT_CUDA_INVALID, "invalid job: rows, cols or inputs"};
  if (P.strategy == Strategy::Custom && (!J.c_new || !J.c_old))
    throw Failure{GEOEDIT_CUDA_INVALID, "strategy 'custom' needs coefficients { cNew, cOld }"};
  ck(cudaSetDevice(0), "cudaSetDevice");
  const DeviceCaps caps = device_caps();
  const bool has_imp = J.imp_old != nullptr;
  const bool general = gc::needs_general(P, has_imp);
  const int nslots = std::max(2, std::min(4, opts && opts->streams > 0 ? opts->streams : 2));
  uint64_t limit = opts && opts->memory_limit ? opts->memory_limit : default_memory_limit();

  const size_t per_slot = size_t(limit / uint64_t(nslots));
  // The general path's workspace (2 rows of f32 per resident block) takes at most half a slot:
  // fewer blocks under a small limit (each still walks its share of the rows).
  int ws_blocks = 0;
  if (general) {
    const size_t ws_row = 2 * size_t(std::max<int64_t>(n, 1)) * 4;
    const int64_t fit = int64_t(per_slot / 2 / ws_row);
    ws_blocks = int(std::max<int64_t>(1, std::min<int64_t>(gc::general_blocks(caps.sms, J.rows), fit)));
  }
  const size_t ws_floats = general ? size_t(ws_blocks) * 2 * size_t(n) : 0;
  // Bytes per row on the device (inputs + outputs + per-row results).
  size_t per_row = size_t(n) * (dsize(J.base_dtype) + dsize(J.old_dtype) + dsize(J.new_dtype));
  if (has_imp) per_row += size_t(n) * (dsize(J.imp_old_dtype) + dsize(J.imp_new_dtype));
  if (J.out) per_row += size_t(n) * dsize(J.out_dtype);
  per_row += 8 * 4 + 4 * 3 + 1 + (J.c_new ? 8 : 0);
  const size_t fixed = ws_floats * 4 + 16 * 256;  // workspace + alignment slack
  if (per_slot <= fixed || (per_slot - fixed) / per_row < 1) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "cudaMemoryLimit %llu bytes is too small: one row of %lld columns needs %zu bytes per stream (x%d streams)",
                  (unsigned long long)limit, (long long)n, per_row + fixed, nslots);
    throw Failure{GEOEDIT_CUDA_INVALID, buf};
  }
  int64_t chunk = int64_t((per_slot - fixed) / per_row);
  chunk = std::max<int64_t>(1, std::min<int64_t>(chunk, J.rows));
  // Several chunks even for a block that fits, so that copies and kernels overlap.
  if (J.rows >= 4 * nslots && int64_t(J.rows) * int64_t(per_row) > (int64_t(64) << 20))
    chunk = std::min<int64_t>(chunk, (J.rows + 2 * nslots - 1) / (2 * nslots));
  const Layout L = plan_layout(J, chunk, ws_floats);

  std::lock_guard<std::mutex> lock(g_mu);
  if (int(g_slots.size()) < nslots) g_slots.resize(size_t(nslots));
  for (int s = 0; s < nslots; ++s) {
    ensure_slot(g_slots[size_t(s)], L.dev_end, L.out_end);
    g_slots[size_t(s)].pending_r0 = -1;
  }
  std::vector<int> status(size_t(J.rows), 0);
  const double t = geoedit::rules::row_threshold(P, n);
  const int64_t k = geoedit::rules::keep_count(P.density, n);
  const int64_t chunks = (J.rows + chunk - 1) / chunk;
  const size_t nn = size_t(n);

  auto drain = [&](Slot& s) {
    if (s.pending_r0 < 0) return;
    ck(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize");
    copy_rows_out(J, L, s.pin, s.pending_r0, s.pending_rows, status);
    s.pending_r0 = -1;
  };
  try {
    for (int64_t c = 0; c < chunks; ++c) {
      Slot& s = g_slots[size_t(c % nslots)];
      drain(s);  // this slot's previous chunk is done: its pinned buffers are free again
      const int64_t r0 = c * chunk, nr = std::min<int64_t>(chunk, J.rows - r0);
      copy_rows_in(J, L, s.pin, r0, nr);
      auto h2d = [&](size_t at, size_t bytes) {
        if (bytes) ck(cudaMemcpyAsync(s.dev + at, s.pin + at, bytes, cudaMemcpyHostToDevice, s.stream), "cudaMemcpyAsync H2D");
      };
      h2d(L.base, size_t(nr) * nn * dsize(J.base_dtype));
      h2d(L.old_, size_t(nr) * nn * dsize(J.old_dtype));
      h2d(L.new_, size_t(nr) * nn * dsize(J.new_dtype));
      if (has_imp) {
        h2d(L.imp_old, size_t(nr) * nn * dsize(J.imp_old_dtype));
        h2d(L.imp_new, size_t(nr) * nn * dsize(J.imp_new_dtype));
      }
      if (J.c_new) {
        h2d(L.c_new, size_t(nr) * 4);
        h2d(L.c_old, size_t(nr) * 4);
      }
      gc::DevJob d;
      d.rows = nr;
      d.cols = n;
      d.base = s.dev + L.base; d.base_dt = J.base_dtype;
      d.old_ = s.dev + L.old_; d.old_dt = J.old_dtype;
      d.new_ = s.dev + L.new_; d.new_dt = J.new_dtype;
      if (has_imp) {
        d.imp_old = s.dev + L.imp_old; d.imp_old_dt = J.imp_old_dtype;
        d.imp_new = s.dev + L.imp_new; d.imp_new_dt = J.imp_new_dtype;
      }
      if (J.c_new) {
        d.c_new = reinterpret_cast<const float*>(s.dev + L.c_new);
        d.c_old = reinterpret_cast<const float*>(s.dev + L.c_old);
      }
      d.out = J.out ? static_cast<void*>(s.dev + L.out) : nullptr;
      d.out_dt = J.out_dtype;
      d.cos = reinterpret_cast<double*>(s.dev + L.cos);
      d.na = reinterpret_cast<double*>(s.dev + L.na);
      d.nb = reinterpret_cast<double*>(s.dev + L.nb);
      d.delta_sq = reinterpret_cast<double*>(s.dev + L.delta);
      d.coef_new = reinterpret_cast<float*>(s.dev + L.cn);
      d.coef_old = reinterpret_cast<float*>(s.dev + L.co);
      d.status = reinterpret_cast<int*>(s.dev + L.status);
      d.region = reinterpret_cast<uint8_t*>(s.dev + L.region);
      d.ws = general ? reinterpret_cast<float*>(s.dev + L.ws) : nullptr;
      d.ws_blocks = ws_blocks;
      ck(gc::launch_edit(d, P, t, k, s.stream, caps.sms, caps.smem_optin), "edit kernel launch");
      if (d.out && !P.allow_non_finite && !P.allow_non_finite_output)
        ck(gc::launch_check_out(d.out, d.out_dt, nr, n, d.status, s.stream), "output check launch");
      // Outputs: one D2H of the out rows, then the per-row arrays (contiguous from L.cos).
      if (J.out) ck(cudaMemcpyAsync(s.pin + L.out, s.dev + L.out, size_t(nr) * nn * dsize(J.out_dtype), cudaMemcpyDeviceToHost, s.stream), "cudaMemcpyAsync D2H");
      ck(cudaMemcpyAsync(s.pin + L.cos, s.dev + L.cos, L.out_end - L.cos, cudaMemcpyDeviceToHost, s.stream), "cudaMemcpyAsync D2H");
      s.pending_r0 = r0;
      s.pending_rows = nr;
    }
    for (int si = 0; si < nslots; ++si) drain(g_slots[size_t(si)]);
  } catch (...) {
    for (int si = 0; si < nslots; ++si) {
      cudaStreamSynchronize(g_slots[size_t(si)].stream);
      g_slots[size_t(si)].pending_r0 = -1;
    }
    throw;
  }
  if (info) {
    info->chunk_rows = chunk;
    info->chunks = int(chunks);
    info->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  for (int64_t i = 0; i < J.rows; ++i) {
    if (status[size_t(i)] != gc::kRowOk) {
      if (info) {
        info->bad_row = i;
        info->bad_kind = status[size_t(i)];
      }
      return GEOEDIT_CUDA_ROW_ERROR;
    }
  }
  return GEOEDIT_CUDA_OK;
}

template <typename F>
int guarded(char* err, size_t err_len, F&& f) {
  try {
    return f();
  } catch (const Failure& e) {
    set_msg(err, err_len, e.msg);
    return e.code;
  } catch (const std::bad_alloc&) {
    set_msg(err, err_len, "out of host memory");
    return GEOEDIT_CUDA_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_msg(err, err_len, std::string("internal error: ") + e.what());
    return GEOEDIT_CUDA_ERROR;
  } catch (...) {
    set_msg(err, err_len, "internal error: unknown exception");
    return GEOEDIT_CUDA_ERROR;
  }
}

// RAII device buffer for the lora and bench entry points.
struct DevBuf {
  void* p = nullptr;
  DevBuf() = default;
  explicit DevBuf(size_t bytes) { ck(cudaMalloc(&p, std::max<size_t>(bytes, 1)), "cudaMalloc"); }
  ~DevBuf() { if (p) cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  template <typename T> T* as() const { return static_cast<T*>(p); }
};

struct Events {
  cudaEvent_t a = nullptr, b = nullptr;
  Events() {
    ck(cudaEventCreate(&a), "cudaEventCreate");
    ck(cudaEventCreate(&b), "cudaEventCreate");
  }
  ~Events() { cudaEventDestroy(a); cudaEventDestroy(b); }
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

GEOEDIT_CUDA_EXPORT int geoedit_cuda_abi_version(void) { return GEOEDIT_CUDA_ABI_VERSION; }

GEOEDIT_CUDA_EXPORT int geoedit_cuda_probe(geoedit_cuda_device* dev, char* why, size_t why_len) {
  return guarded(why, why_len, [&]() -> int {
    geoedit_cuda_device d;
    std::memset(&d, 0, sizeof d);
    cudaRuntimeGetVersion(&d.runtime_version);
    cudaDriverGetVersion(&d.driver_version);
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    d.device_count = count;
    if (dev) *dev = d;
    if (e == cudaErrorInsufficientDriver) {
      char buf[256];
      if (d.driver_version == 0)
        std::snprintf(buf, sizeof buf, "no NVIDIA driver is installed (the CUDA runtime %d.%d found none)",
                      d.runtime_version / 1000, (d.runtime_version % 1000) / 10);
      else
        std::snprintf(buf, sizeof buf, "the NVIDIA driver supports CUDA %d.%d but the plugin's runtime is %d.%d; update the driver",
                      d.driver_version / 1000, (d.driver_version % 1000) / 10, d.runtime_version / 1000, (d.runtime_version % 1000) / 10);
      set_msg(why, why_len, buf);
      return GEOEDIT_CUDA_NO_DRIVER;
    }
    if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0)) {
      set_msg(why, why_len, "the NVIDIA driver sees no CUDA device (check CUDA_VISIBLE_DEVICES and nvidia-smi)");
      return GEOEDIT_CUDA_NO_DEVICE;
    }
    if (e != cudaSuccess) {
      set_msg(why, why_len, std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
      return GEOEDIT_CUDA_ERROR;
    }
    cudaDeviceProp prop;
    ck(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    std::snprintf(d.name, sizeof d.name, "%s", prop.name);
    d.total_memory = uint64_t(prop.totalGlobalMem);
    d.cc_major = prop.major;
    d.cc_minor = prop.minor;
    d.multiprocessors = prop.multiProcessorCount;
    d.device_index = 0;
    if (dev) *dev = d;
    if (prop.major < kMinMajor) {
      char buf[512];
      std::snprintf(buf, sizeof buf, "device 0 (%s) has compute capability %d.%d; this build needs 8.0 or newer (sm_80, sm_86, sm_89, sm_90)",
                    prop.name, prop.major, prop.minor);
      set_msg(why, why_len, buf);
      return GEOEDIT_CUDA_TOO_OLD;
    }
    return GEOEDIT_CUDA_OK;
  });
}

GEOEDIT_CUDA_EXPORT int geoedit_cuda_run_edit(const geoedit_cuda_job* job, const geoedit_cuda_params* params,
                                              const geoedit_cuda_options* opts, geoedit_cuda_run_info* info,
                                              char* err, size_t err_len) {
  if (info) {
    std::memset(info, 0, sizeof *info);
    info->bad_row = -1;
  }
  if (!job || !params) {
    set_msg(err, err_len, "null job or params");
    return GEOEDIT_CUDA_INVALID;
  }
  return guarded(err, err_len, [&]() { return run_edit_impl(*job, *params, opts, info); });
}

GEOEDIT_CUDA_EXPORT int geoedit_cuda_lora_geometry(const geoedit_cuda_lora* job, char* err, size_t err_len) {
  if (!job) {
    set_msg(err, err_len, "null job");
    return GEOEDIT_CUDA_INVALID;
  }
  return guarded(err, err_len, [&]() -> int {
    const geoedit_cuda_lora& J = *job;
    if (J.m <= 0) return GEOEDIT_CUDA_OK;
    ck(cudaSetDevice(0), "cudaSetDevice");
    const size_t n = size_t(J.n), ro = size_t(J.r_old), rn = size_t(J.r_new), m = size_t(J.m);
    DevBuf ao(ro * n * 4), an(rn * n * 4), bo(m * ro * 4), bn(m * rn * 4);
    DevBuf goo(ro * ro * 8), gnn(rn * rn * 8), gon(ro * rn * 8), out(3 * m * 8);
    cudaStream_t s = nullptr;
    ck(cudaMemcpy(ao.p, J.a_old, ro * n * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
    ck(cudaMemcpy(an.p, J.a_new, rn * n * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
    ck(cudaMemcpy(bo.p, J.b_old, m * ro * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
    ck(cudaMemcpy(bn.p, J.b_new, m * rn * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
    ck(gc::launch_gram(ao.as<float>(), J.r_old, ao.as<float>(), J.r_old, J.n, goo.as<double>(), s), "gram kernel");
    ck(gc::launch_gram(an.as<float>(), J.r_new, an.as<float>(), J.r_new, J.n, gnn.as<double>(), s), "gram kernel");
    ck(gc::launch_gram(ao.as<float>(), J.r_old, an.as<float>(), J.r_new, J.n, gon.as<double>(), s), "gram kernel");
    double* o = out.as<double>();
    ck(gc::launch_quad(bo.as<float>(), J.r_old, gon.as<double>(), bn.as<float>(), J.r_new, J.m, J.s_old * J.s_new, o, s), "quad kernel");
    ck(gc::launch_quad(bo.as<float>(), J.r_old, goo.as<double>(), bo.as<float>(), J.r_old, J.m, J.s_old * J.s_old, o + m, s), "quad kernel");
    ck(gc::launch_quad(bn.as<float>(), J.r_new, gnn.as<double>(), bn.as<float>(), J.r_new, J.m, J.s_new * J.s_new, o + 2 * m, s), "quad kernel");
    ck(cudaDeviceSynchronize(), "lora geometry kernels");
    std::vector<double> h(3 * m);
    ck(cudaMemcpy(h.data(), o, 3 * m * 8, cudaMemcpyDeviceToHost), "cudaMemcpy");
    if (J.dot) std::memcpy(J.dot, h.data(), m * 8);
    if (J.na) std::memcpy(J.na, h.data() + m, m * 8);
    if (J.nb) std::memcpy(J.nb, h.data() + 2 * m, m * 8);
    return GEOEDIT_CUDA_OK;
  });
}

GEOEDIT_CUDA_EXPORT int geoedit_cuda_bench(const geoedit_cuda_bench_spec* spec, geoedit_cuda_bench_result* res,
                                           char* err, size_t err_len) {
  if (!spec || !res) {
    set_msg(err, err_len, "null spec or result");
    return GEOEDIT_CUDA_INVALID;
  }
  return guarded(err, err_len, [&]() -> int {
    const geoedit_cuda_bench_spec& S = *spec;
    ck(cudaSetDevice(0), "cudaSetDevice");
    const DeviceCaps caps = device_caps();
    const Params P = to_params(S.params);
    if (P.strategy == Strategy::Custom) throw Failure{GEOEDIT_CUDA_INVALID, "the bench does not take strategy 'custom'"};
    const int64_t rows = S.rows, n = S.cols, count = rows * n;
    const size_t es = dsize(S.dtype), bytes = size_t(count) * es;
    const bool imp = S.with_importance != 0;
    const bool general = gc::needs_general(P, imp);
    DevBuf base(bytes), old_(bytes), new_(bytes), out(bytes);
    DevBuf io(imp ? bytes : 0), in_(imp ? bytes : 0);
    DevBuf rowbuf(size_t(rows) * (8 * 4 + 4 * 3 + 1) + 1024);
    const int ws_blocks = general ? gc::general_blocks(caps.sms, rows) : 0;
    DevBuf ws(general ? size_t(ws_blocks) * 2 * size_t(n) * 4 : 0);
    DevBuf sum(8);
    cudaStream_t s = nullptr;
    ck(gc::launch_fill(base.p, S.dtype, count, 1u, 0.0f, 0.05f, s), "fill");
    ck(gc::launch_fill(old_.p, S.dtype, count, 2u, 0.0f, 0.06f, s), "fill");
    ck(gc::launch_fill(new_.p, S.dtype, count, 3u, 0.0f, 0.06f, s), "fill");
    if (imp) {
      ck(gc::launch_fill(io.p, S.dtype, count, 4u, 0.5f, 0.5f, s), "fill");
      ck(gc::launch_fill(in_.p, S.dtype, count, 5u, 0.5f, 0.5f, s), "fill");
    }
    gc::DevJob d;
    d.rows = rows; d.cols = n;
    d.base = base.p; d.old_ = old_.p; d.new_ = new_.p;
    d.base_dt = d.old_dt = d.new_dt = d.out_dt = S.dtype;
    if (imp) { d.imp_old = io.p; d.imp_new = in_.p; d.imp_old_dt = d.imp_new_dt = S.dtype; }
    d.out = out.p;
    char* rb = rowbuf.as<char>();
    const size_t r = size_t(rows);
    d.cos = reinterpret_cast<double*>(rb);
    d.na = reinterpret_cast<double*>(rb + 8 * r);
    d.nb = reinterpret_cast<double*>(rb + 16 * r);
    d.delta_sq = reinterpret_cast<double*>(rb + 24 * r);
    d.coef_new = reinterpret_cast<float*>(rb + 32 * r);
    d.coef_old = reinterpret_cast<float*>(rb + 36 * r);
    d.status = reinterpret_cast<int*>(rb + 40 * r);
    d.region = reinterpret_cast<uint8_t*>(rb + 44 * r);
    d.ws = general ? ws.as<float>() : nullptr;
    d.ws_blocks = ws_blocks;
    const double t = geoedit::rules::row_threshold(P, n);
    const int64_t k = geoedit::rules::keep_count(P.density, n);
    Events ev;
    const int reps = std::max(3, S.reps);
    ck(gc::launch_edit(d, P, t, k, s, caps.sms, caps.smem_optin), "edit kernel");  // warm-up
    ck(cudaDeviceSynchronize(), "edit kernel (warm-up)");
    std::vector<double> times;
    for (int i = 0; i < reps; ++i) {
      ck(cudaEventRecord(ev.a, s), "cudaEventRecord");
      ck(gc::launch_edit(d, P, t, k, s, caps.sms, caps.smem_optin), "edit kernel");
      ck(cudaEventRecord(ev.b, s), "cudaEventRecord");
      ck(cudaEventSynchronize(ev.b), "edit kernel");
      float ms = 0;
      ck(cudaEventElapsedTime(&ms, ev.a, ev.b), "cudaEventElapsedTime");
      times.push_back(ms);
    }
    res->kernel_ms = median(times);
    const double moved = double(bytes) * (imp ? 6.0 : 4.0);
    res->kernel_gbps = moved / (res->kernel_ms * 1e-3) / 1e9;
    // Device-to-device copy of the same three inputs' size: bytes read + written.
    std::vector<double> ctimes;
    DevBuf c1(bytes * 3), c2(bytes * 3);
    ck(cudaMemcpyAsync(c2.p, c1.p, bytes * 3, cudaMemcpyDeviceToDevice, s), "cudaMemcpy D2D");
    for (int i = 0; i < reps; ++i) {
      ck(cudaEventRecord(ev.a, s), "cudaEventRecord");
      ck(cudaMemcpyAsync(c2.p, c1.p, bytes * 3, cudaMemcpyDeviceToDevice, s), "cudaMemcpy D2D");
      ck(cudaEventRecord(ev.b, s), "cudaEventRecord");
      ck(cudaEventSynchronize(ev.b), "cudaMemcpy D2D");
      float ms = 0;
      ck(cudaEventElapsedTime(&ms, ev.a, ev.b), "cudaEventElapsedTime");
      ctimes.push_back(ms);
    }
    res->copy_gbps = double(bytes) * 3 * 2 / (median(ctimes) * 1e-3) / 1e9;
    ck(cudaMemset(sum.p, 0, 8), "cudaMemset");
    ck(gc::launch_sum(out.p, S.dtype, count, sum.as<double>(), s), "sum");
    ck(cudaMemcpy(&res->checksum, sum.p, 8, cudaMemcpyDeviceToHost), "cudaMemcpy");
    return GEOEDIT_CUDA_OK;
  });
}
