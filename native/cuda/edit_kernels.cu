// SPEC §3 on the GPU: one thread block per row (a persistent grid walks the rows).
//
// Fast path (density 1, magnitude importance): one pass reads base/old/new (16-byte loads:
// 8 elements per thread and step when cols % 8 == 0, else 4, else scalar), keeps the decoded row in shared memory when it fits, reduces dot/na/nb in f64 in a
// fixed order, thread 0 applies the shared coefficient rules (native/core/rules.h), and the row is
// written from shared memory. Longer rows are read a second time for the output.
//
// General path (density < 1 and/or importance tensors): the task vectors a, b go to a per-block
// workspace; per-row top-k is a 3-level radix select (11/11/10 bits) on the importance bits with
// SPEC's tie rule (ties kept by the lower column index, via an ordered block scan only when the
// k-th key is tied), then the kept importance RMS, the coefficients and the output.
//
// Numerics: compiled with --fmad=false (no contraction, as the CPU's -ffp-contract=off); the
// output is (base + c_new·b) + c_old·a in f32 with explicit _rn intrinsics, rounded RNE to the
// output dtype with the CPU's NaN rules, so a row with the same coefficients is bit-identical to
// the CPU reference. Reductions are in a fixed order: the same bytes from run to run.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>

#include "../core/rules.h"
#include "kernels.h"

// Kernel launches and dynamic shared memory through macros, so that native/cuda/emu/ can run this
// same file on the CPU (a logic check of the kernels where no GPU is present).
#ifndef GEOEDIT_LAUNCH
#define GEOEDIT_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#define GEOEDIT_DYNAMIC_SMEM(type, name) extern __shared__ type name[]
#endif

namespace geoedit {
namespace cuda {
namespace {

#ifndef GEOEDIT_CUDA_THREADS
#define GEOEDIT_CUDA_THREADS 256
#endif
constexpr int kThreads = GEOEDIT_CUDA_THREADS;  // threads per block (a multiple of 32, <= 1024)
constexpr unsigned kFull = 0xffffffffu;

// ---- dtype helpers ----------------------------------------------------------------------------
__device__ __forceinline__ float dec16(uint32_t h, int dt) {
  if (dt == 1) return __half2float(__ushort_as_half((unsigned short)h));
  return __uint_as_float(h << 16);
}

__device__ __forceinline__ float ld1(const void* p, int dt, int64_t i) {
  if (dt == 0) return __ldg(static_cast<const float*>(p) + i);
  return dec16(__ldg(static_cast<const unsigned short*>(p) + i), dt);
}

__device__ __forceinline__ void ld4(const void* p, int dt, int64_t i, float v[4]) {
  if (dt == 0) {
    const float4 x = __ldg(reinterpret_cast<const float4*>(static_cast<const float*>(p) + i));
    v[0] = x.x; v[1] = x.y; v[2] = x.z; v[3] = x.w;
  } else {
    const uint2 x = __ldg(reinterpret_cast<const uint2*>(static_cast<const unsigned short*>(p) + i));
    v[0] = dec16(x.x & 0xffffu, dt);
    v[1] = dec16(x.x >> 16, dt);
    v[2] = dec16(x.y & 0xffffu, dt);
    v[3] = dec16(x.y >> 16, dt);
  }
}

// f32 -> f16/bf16, round to nearest even, NaN handled as the CPU reference (native/core/dtype.h).
__device__ __forceinline__ uint32_t enc16(float f, int dt) {
  const uint32_t u = __float_as_uint(f);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  if (dt == 1) {
    if (nan) return ((u >> 16) & 0x8000u) | 0x7E00u;
    return __half_as_ushort(__float2half_rn(f));
  }
  if (nan) return ((u >> 16) | 0x40u) & 0xffffu;
  return ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16) & 0xffffu;
}

__device__ __forceinline__ void st1(void* p, int dt, int64_t i, float v) {
  if (dt == 0) static_cast<float*>(p)[i] = v;
  else static_cast<unsigned short*>(p)[i] = (unsigned short)enc16(v, dt);
}

__device__ __forceinline__ void st4(void* p, int dt, int64_t i, const float v[4]) {
  if (dt == 0) {
    *reinterpret_cast<float4*>(static_cast<float*>(p) + i) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    uint2 x;
    x.x = enc16(v[0], dt) | (enc16(v[1], dt) << 16);
    x.y = enc16(v[2], dt) | (enc16(v[3], dt) << 16);
    *reinterpret_cast<uint2*>(static_cast<unsigned short*>(p) + i) = x;
  }
}

// SPEC §3.6: (base + c_new·b) + c_old·a in f32, no contraction.
__device__ __forceinline__ float out_val(float base, float a, float b, float cn, float co) {
  return __fadd_rn(__fadd_rn(base, __fmul_rn(cn, b)), __fmul_rn(co, a));
}

// Monotone key of an importance value (as trim_topk in native/core/edit.cc): -0, 0, NaN -> 0.
__device__ __forceinline__ uint32_t imp_key(float e) { return e > 0.0f ? __float_as_uint(e) : 0u; }

// ---- block reductions, fixed order ------------------------------------------------------------
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(kFull, v, o);
  return v;
}

// Sums over the block; valid in thread 0. sh: 3*32 doubles.
__device__ void block_sum3(double& x, double& y, double& z, double* sh) {
  x = warp_sum(x); y = warp_sum(y); z = warp_sum(z);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) { sh[w] = x; sh[32 + w] = y; sh[64 + w] = z; }
  __syncthreads();
  if (threadIdx.x == 0) {
    const int nw = blockDim.x >> 5;
    double a = 0, b = 0, c = 0;
    for (int i = 0; i < nw; ++i) { a += sh[i]; b += sh[32 + i]; c += sh[64 + i]; }
    x = a; y = b; z = c;
  }
}

__device__ double block_sum(double v, double* sh) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  double r = 0;
  if (threadIdx.x == 0) {
    const int nw = blockDim.x >> 5;
    for (int i = 0; i < nw; ++i) r += sh[i];
  }
  return r;
}

// Inclusive prefix sum over the block in thread order; *total = the block's sum. sh: 32 words.
__device__ uint32_t block_scan_incl(uint32_t v, uint32_t* sh, uint32_t* total) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t y = __shfl_up_sync(kFull, v, o);
    if (lane >= o) v += y;
  }
  __syncthreads();
  if (lane == 31) sh[w] = v;
  __syncthreads();
  if (w == 0) {
    uint32_t x = lane < nw ? sh[lane] : 0u;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t y = __shfl_up_sync(kFull, x, o);
      if (lane >= o) x += y;
    }
    if (lane < nw) sh[lane] = x;
  }
  __syncthreads();
  if (w > 0) v += sh[w - 1];
  *total = sh[nw - 1];
  return v;
}

// ---- per-row scalar steps (thread 0) ----------------------------------------------------------
// Geometry: status, cos, region, na, nb. Returns false when the row is rejected (non-finite).
__device__ bool row_geometry(const DevJob& J, const Params& P, double t, int64_t row, double d, double x, double y,
                             Region* region) {
  if (!rules::sums_finite(d, x, y) && !P.allow_non_finite) {
    J.status[row] = kRowNonFinite;
    return false;
  }
  const double c = rules::row_cos(d, x, y);
  *region = rules::row_region(c, t);
  J.cos[row] = c;
  J.region[row] = uint8_t(*region);
  J.na[row] = x;
  J.nb[row] = y;
  return true;
}

__device__ void row_coefficients(const DevJob& J, const Params& P, int64_t row, Region region, double sa, double sb,
                                 double ta, double tb, double td, float* cn, float* co) {
  const bool custom = P.strategy == Strategy::Custom;
  double c_n = 0, c_o = 0;
  rules::row_coefficients(P, region, custom ? double(J.c_new[row]) : 0.0, custom ? double(J.c_old[row]) : 0.0,
                          [&]() { return rules::importance_w_old(sa, sb, P.temperature); }, &c_n, &c_o);
  *cn = float(c_n);
  *co = float(c_o);
  J.coef_new[row] = *cn;
  J.coef_old[row] = *co;
  const double c1 = *cn, c2 = *co;
  J.delta_sq[row] = rules::applied_energy(c1, c2, td, ta, tb);
  J.status[row] = kRowOk;
}

// A row whose coefficients are both 0 is θ0[i] bit for bit (same dtype), else θ0 re-encoded.
__device__ void copy_base_row(const DevJob& J, int64_t off, int64_t n) {
  if (J.base_dt == J.out_dt) {
    if (J.out_dt == 0) {
      const uint32_t* s = static_cast<const uint32_t*>(J.base) + off;
      uint32_t* d = static_cast<uint32_t*>(J.out) + off;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) d[j] = s[j];
    } else {
      const unsigned short* s = static_cast<const unsigned short*>(J.base) + off;
      unsigned short* d = static_cast<unsigned short*>(J.out) + off;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) d[j] = s[j];
    }
  } else {
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) st1(J.out, J.out_dt, off + j, ld1(J.base, J.base_dt, off + j));
  }
}

// The fast kernels' per-row step after the load pass: the block's sums, then thread 0 applies the
// shared rules and publishes the coefficients (skip: the row was rejected) to the whole block.
__device__ __forceinline__ void fast_row_rules(const DevJob& J, const Params& P, double t, int64_t row, double d,
                                               double x, double y, double* red, float* s_cn, float* s_co, int* s_skip) {
  block_sum3(d, x, y, red);
  if (threadIdx.x == 0) {
    const int64_t n = J.cols;
    Region region;
    float cn = 0, co = 0;
    int skip = 1;
    if (row_geometry(J, P, t, row, d, x, y, &region)) {
      const double sa = n > 0 ? sqrt(x / double(n)) : 0.0;
      const double sb = n > 0 ? sqrt(y / double(n)) : 0.0;
      row_coefficients(J, P, row, region, sa, sb, x, y, d, &cn, &co);
      skip = 0;
    }
    *s_cn = cn;
    *s_co = co;
    *s_skip = skip;
  }
  __syncthreads();
}

// ---- fast path --------------------------------------------------------------------------------
// W consecutive elements per thread and step: 16-byte loads for f16/bf16 with W = 8 (one uint4)
// and for f32 (float4s); rows whose length is not a multiple of 4 take the scalar loop.
template <int W>
__device__ __forceinline__ void ldv(const void* p, int dt, int64_t i, float* v) {
  if (W == 4 || dt == 0) {
#pragma unroll
    for (int q = 0; q < W; q += 4) ld4(p, dt, i + q, v + q);
  } else {
    const uint4 x = __ldg(reinterpret_cast<const uint4*>(static_cast<const unsigned short*>(p) + i));
    const uint32_t w[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      v[2 * q] = dec16(w[q] & 0xffffu, dt);
      v[2 * q + 1] = dec16(w[q] >> 16, dt);
    }
  }
}

template <int W>
__device__ __forceinline__ void stv(void* p, int dt, int64_t i, const float* v) {
  if (W == 4 || dt == 0) {
#pragma unroll
    for (int q = 0; q < W; q += 4) st4(p, dt, i + q, v + q);
  } else {
    uint4 x;
    x.x = enc16(v[0], dt) | (enc16(v[1], dt) << 16);
    x.y = enc16(v[2], dt) | (enc16(v[3], dt) << 16);
    x.z = enc16(v[4], dt) | (enc16(v[5], dt) << 16);
    x.w = enc16(v[6], dt) | (enc16(v[7], dt) << 16);
    *reinterpret_cast<uint4*>(static_cast<unsigned short*>(p) + i) = x;
  }
}

template <int W>
__device__ __forceinline__ void smem_store(float* s, int64_t j, const float* v) {
#pragma unroll
  for (int q = 0; q < W; q += 4) *reinterpret_cast<float4*>(s + j + q) = make_float4(v[q], v[q + 1], v[q + 2], v[q + 3]);
}

template <int W>
__device__ __forceinline__ void smem_load(const float* s, int64_t j, float* v) {
#pragma unroll
  for (int q = 0; q < W; q += 4) {
    const float4 x = *reinterpret_cast<const float4*>(s + j + q);
    v[q] = x.x; v[q + 1] = x.y; v[q + 2] = x.z; v[q + 3] = x.w;
  }
}

// Pass 1: decode, task vectors, f64 sums (per thread), optionally cache the row.
template <bool CACHE, int W>
__device__ __forceinline__ void fast_load(const DevJob& J, int64_t off, int64_t n, float* cb, float* ca, float* cv,
                                          double& d, double& x, double& y) {
  for (int64_t j = int64_t(threadIdx.x) * W; j < n; j += int64_t(blockDim.x) * W) {
    float fb[W], fo[W], fn[W], fa[W], fv[W];
    ldv<W>(J.base, J.base_dt, off + j, fb);
    ldv<W>(J.old_, J.old_dt, off + j, fo);
    ldv<W>(J.new_, J.new_dt, off + j, fn);
#pragma unroll
    for (int q = 0; q < W; ++q) {
      fa[q] = __fsub_rn(fo[q], fb[q]);
      fv[q] = __fsub_rn(fn[q], fb[q]);
      d += double(fa[q]) * double(fv[q]);
      x += double(fa[q]) * double(fa[q]);
      y += double(fv[q]) * double(fv[q]);
    }
    if (CACHE) {
      smem_store<W>(cb, j, fb);
      smem_store<W>(ca, j, fa);
      smem_store<W>(cv, j, fv);
    }
  }
}

// Pass 2: the output row, from the cache or from a second read.
template <bool CACHE, int W>
__device__ __forceinline__ void fast_store(const DevJob& J, int64_t off, int64_t n, const float* cb, const float* ca,
                                           const float* cv, float cn, float co) {
  for (int64_t j = int64_t(threadIdx.x) * W; j < n; j += int64_t(blockDim.x) * W) {
    float fb[W], fa[W], fv[W], o[W];
    if (CACHE) {
      smem_load<W>(cb, j, fb);
      smem_load<W>(ca, j, fa);
      smem_load<W>(cv, j, fv);
    } else {
      float fo[W], fn[W];
      ldv<W>(J.base, J.base_dt, off + j, fb);
      ldv<W>(J.old_, J.old_dt, off + j, fo);
      ldv<W>(J.new_, J.new_dt, off + j, fn);
#pragma unroll
      for (int q = 0; q < W; ++q) { fa[q] = __fsub_rn(fo[q], fb[q]); fv[q] = __fsub_rn(fn[q], fb[q]); }
    }
#pragma unroll
    for (int q = 0; q < W; ++q) o[q] = out_val(fb[q], fa[q], fv[q], cn, co);
    stv<W>(J.out, J.out_dt, off + j, o);
  }
}

template <bool CACHE>
__global__ void __launch_bounds__(kThreads) edit_fast_kernel(DevJob J, Params P, double t) {
  GEOEDIT_DYNAMIC_SMEM(float4, cache4);  // CACHE: base | a | b, 3·cols floats
  __shared__ double red[3 * 32];
  __shared__ float s_cn, s_co;
  __shared__ int s_skip;
  float* cache = reinterpret_cast<float*>(cache4);
  const int64_t n = J.cols;
  const int vw = (n % 8) == 0 ? 8 : ((n % 4) == 0 ? 4 : 1);
  float* cb = cache;
  float* ca = cache + n;
  float* cv = cache + 2 * n;
  for (int64_t row = blockIdx.x; row < J.rows; row += gridDim.x) {
    const int64_t off = row * n;
    double d = 0, x = 0, y = 0;
    if (vw == 8) {
      fast_load<CACHE, 8>(J, off, n, cb, ca, cv, d, x, y);
    } else if (vw == 4) {
      fast_load<CACHE, 4>(J, off, n, cb, ca, cv, d, x, y);
    } else {
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const float fb = ld1(J.base, J.base_dt, off + j);
        const float a = __fsub_rn(ld1(J.old_, J.old_dt, off + j), fb);
        const float b = __fsub_rn(ld1(J.new_, J.new_dt, off + j), fb);
        d += double(a) * double(b);
        x += double(a) * double(a);
        y += double(b) * double(b);
        if (CACHE) { cb[j] = fb; ca[j] = a; cv[j] = b; }
      }
    }
    fast_row_rules(J, P, t, row, d, x, y, red, &s_cn, &s_co, &s_skip);
    const float cn = s_cn, co = s_co;
    if (J.out != nullptr && !s_skip) {
      if (cn == 0.0f && co == 0.0f) {
        copy_base_row(J, off, n);
      } else if (vw == 8) {
        fast_store<CACHE, 8>(J, off, n, cb, ca, cv, cn, co);
      } else if (vw == 4) {
        fast_store<CACHE, 4>(J, off, n, cb, ca, cv, cn, co);
      } else {
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
          float fb, a, b;
          if (CACHE) {
            fb = cb[j]; a = ca[j]; b = cv[j];
          } else {
            fb = ld1(J.base, J.base_dt, off + j);
            a = __fsub_rn(ld1(J.old_, J.old_dt, off + j), fb);
            b = __fsub_rn(ld1(J.new_, J.new_dt, off + j), fb);
          }
          st1(J.out, J.out_dt, off + j, out_val(fb, a, b, cn, co));
        }
      }
    }
    __syncthreads();  // the cache and s_* are reused by the next row
  }
}

// ---- fast path for 16-bit inputs (the usual checkpoint: base, old and new all bf16 or f16) --------
// The same rules and the same per-thread summation order as edit_fast_kernel (so the same bytes),
// laid out for occupancy and memory-level parallelism:
//   * the row is cached in shared memory as loaded (6 bytes per column instead of 12 decoded), so
//     more rows are in flight per multiprocessor (5 blocks of 256 threads for 4096 columns, the
//     register cap below, against 4) and rows up to 19024 columns stay cached (read once);
//   * each thread issues the loads of two 8-element chunks before it decodes either, so twice as
//     many loads are outstanding per thread in the load phase.
// Needs cols % 8 == 0 (16-byte loads). Nsight Compute on the H200 showed the f32-cache kernel
// limited to 4 blocks per SM by shared memory and stalled on global loads (docs/cuda.md).
__device__ __forceinline__ void dec8(const uint4& r, int dt, float* v) {
  const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    v[2 * q] = dec16(w[q] & 0xffffu, dt);
    v[2 * q + 1] = dec16(w[q] >> 16, dt);
  }
}

__device__ __forceinline__ void acc8(const uint4& rb, const uint4& ro, const uint4& rn, const DevJob& J, double& d,
                                     double& x, double& y) {
  float fb[8], fo[8], fn[8];
  dec8(rb, J.base_dt, fb);
  dec8(ro, J.old_dt, fo);
  dec8(rn, J.new_dt, fn);
#pragma unroll
  for (int q = 0; q < 8; ++q) {
    const float a = __fsub_rn(fo[q], fb[q]);
    const float b = __fsub_rn(fn[q], fb[q]);
    d += double(a) * double(b);
    x += double(a) * double(a);
    y += double(b) * double(b);
  }
}

// NT threads per block, at least MINB blocks per multiprocessor (caps the registers: 256 threads x
// 5 blocks -> <= 51 registers, so registers do not limit occupancy before shared memory does).
template <int NT, int MINB>
__global__ void __launch_bounds__(NT, MINB) edit_fast16_kernel(DevJob J, Params P, double t) {
  GEOEDIT_DYNAMIC_SMEM(uint4, raw);  // base | old | new chunks, 3·(cols/8) uint4
  __shared__ double red[3 * 32];
  __shared__ float s_cn, s_co;
  __shared__ int s_skip;
  const int64_t n = J.cols, nc = n / 8;
  uint4* rb_s = raw;
  uint4* ro_s = raw + nc;
  uint4* rn_s = raw + 2 * nc;
  const int64_t bd = blockDim.x;
  for (int64_t row = blockIdx.x; row < J.rows; row += gridDim.x) {
    const int64_t off = row * n;
    const uint4* gb = reinterpret_cast<const uint4*>(static_cast<const unsigned short*>(J.base) + off);
    const uint4* go = reinterpret_cast<const uint4*>(static_cast<const unsigned short*>(J.old_) + off);
    const uint4* gn = reinterpret_cast<const uint4*>(static_cast<const unsigned short*>(J.new_) + off);
    double d = 0, x = 0, y = 0;
    for (int64_t c = threadIdx.x; c < nc; c += 2 * bd) {
      const bool two = c + bd < nc;
      const uint4 b0 = __ldg(gb + c), o0 = __ldg(go + c), n0 = __ldg(gn + c);
      uint4 b1 = b0, o1 = o0, n1 = n0;
      if (two) { b1 = __ldg(gb + c + bd); o1 = __ldg(go + c + bd); n1 = __ldg(gn + c + bd); }
      rb_s[c] = b0; ro_s[c] = o0; rn_s[c] = n0;
      acc8(b0, o0, n0, J, d, x, y);
      if (two) {
        rb_s[c + bd] = b1; ro_s[c + bd] = o1; rn_s[c + bd] = n1;
        acc8(b1, o1, n1, J, d, x, y);
      }
    }
    fast_row_rules(J, P, t, row, d, x, y, red, &s_cn, &s_co, &s_skip);
    const float cn = s_cn, co = s_co;
    if (J.out != nullptr && !s_skip) {
      if (cn == 0.0f && co == 0.0f) {
        copy_base_row(J, off, n);
      } else {
        for (int64_t c = threadIdx.x; c < nc; c += bd) {
          float fb[8], fo[8], fn[8], o[8];
          dec8(rb_s[c], J.base_dt, fb);
          dec8(ro_s[c], J.old_dt, fo);
          dec8(rn_s[c], J.new_dt, fn);
#pragma unroll
          for (int q = 0; q < 8; ++q) o[q] = out_val(fb[q], __fsub_rn(fo[q], fb[q]), __fsub_rn(fn[q], fb[q]), cn, co);
          stv<8>(J.out, J.out_dt, off + c * 8, o);
        }
      }
    }
    __syncthreads();  // the cache and s_* are reused by the next row
  }
}

// ---- general path: importance, per-row top-k --------------------------------------------------
struct SelectShared {
  uint32_t hist[2048];
  uint32_t scan[32];
  uint32_t digit, tie;
  long long krem;
};

__device__ __forceinline__ float imp_at(const void* ip, int idt, const float* w, int64_t off, int64_t j) {
  return ip != nullptr ? ld1(ip, idt, off + j) : fabsf(w[j]);
}

// Importance check (when given), then either the sum of all e² (k >= n) or the top-k trim of w
// (entries not kept are zeroed) and the sum of the kept e². Returns the sum in thread 0 and
// *bad = true (in every thread) when an importance value is negative or not finite.
__device__ double trim_side(float* w, const void* ip, int idt, int64_t off, int64_t n, int64_t k, SelectShared& S,
                            double* red, bool* bad) {
  *bad = false;
  if (ip != nullptr) {
    int b = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const float e = ld1(ip, idt, off + j);
      if (!(e >= 0.0f) || !isfinite(e)) b = 1;
    }
    if (__syncthreads_or(b)) { *bad = true; return 0.0; }
  }
  double ss = 0;
  if (k >= n) {
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const float e = imp_at(ip, idt, w, off, j);
      ss += double(e) * double(e);
    }
    return block_sum(ss, red);
  }
  uint32_t prefix = 0, pmask = 0, tie = 0;
  long long krem = k;
  for (int level = 0; level < 3; ++level) {
    const int shift = level == 0 ? 21 : (level == 1 ? 10 : 0);
    const uint32_t nbins = level == 2 ? 1024u : 2048u, dmask = nbins - 1u;
    for (uint32_t b = threadIdx.x; b < nbins; b += blockDim.x) S.hist[b] = 0;
    __syncthreads();
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const uint32_t key = imp_key(imp_at(ip, idt, w, off, j));
      if ((key & pmask) == prefix) atomicAdd(&S.hist[(key >> shift) & dmask], 1u);
    }
    __syncthreads();
    // Thread i owns `per` bins counted down from the top; a scan gives the count strictly above.
    const uint32_t per = nbins / blockDim.x;
    const int hi = int(nbins) - 1 - int(threadIdx.x * per);
    uint32_t local = 0;
    for (uint32_t q = 0; q < per; ++q) local += S.hist[hi - int(q)];
    uint32_t total;
    const uint32_t incl = block_scan_incl(local, S.scan, &total);
    long long running = (long long)(incl - local);
    for (uint32_t q = 0; q < per; ++q) {
      const uint32_t h = S.hist[hi - int(q)];
      if (running < krem && running + (long long)h >= krem) {
        S.digit = uint32_t(hi - int(q));
        S.krem = krem - running;
        S.tie = h;
      }
      running += h;
    }
    __syncthreads();
    prefix |= S.digit << shift;
    pmask |= dmask << shift;
    krem = S.krem;
    tie = S.tie;
    __syncthreads();
  }
  const uint32_t kth = prefix;  // keep keys > kth, and the first krem keys == kth by column index
  if ((long long)tie == krem) {
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const float e = imp_at(ip, idt, w, off, j);
      if (imp_key(e) >= kth) ss += double(e) * double(e);
      else w[j] = 0.0f;
    }
  } else {
    long long taken = 0;
    for (int64_t j0 = 0; j0 < n; j0 += blockDim.x) {
      const int64_t j = j0 + threadIdx.x;
      float e = 0.0f;
      uint32_t key = 0;
      if (j < n) { e = imp_at(ip, idt, w, off, j); key = imp_key(e); }
      const uint32_t eq = (j < n && key == kth) ? 1u : 0u;
      uint32_t tot;
      const uint32_t incl = block_scan_incl(eq, S.scan, &tot);
      if (j < n) {
        const bool keep = key > kth || (eq && taken + (long long)(incl - eq) < krem);
        if (keep) ss += double(e) * double(e);
        else w[j] = 0.0f;
      }
      taken += tot;
    }
  }
  return block_sum(ss, red);
}

__global__ void __launch_bounds__(kThreads) edit_general_kernel(DevJob J, Params P, double t, int64_t k) {
  __shared__ SelectShared S;
  __shared__ double red[3 * 32];
  __shared__ float s_cn, s_co;
  __shared__ int s_flag, s_region;
  const int64_t n = J.cols;
  const bool trim = k < n;
  float* wa = J.ws + size_t(blockIdx.x) * 2 * size_t(n);
  float* wb = wa + n;
  for (int64_t row = blockIdx.x; row < J.rows; row += gridDim.x) {
    const int64_t off = row * n;
    double d = 0, x = 0, y = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const float fb = ld1(J.base, J.base_dt, off + j);
      const float a = __fsub_rn(ld1(J.old_, J.old_dt, off + j), fb);
      const float b = __fsub_rn(ld1(J.new_, J.new_dt, off + j), fb);
      wa[j] = a;
      wb[j] = b;
      d += double(a) * double(b);
      x += double(a) * double(a);
      y += double(b) * double(b);
    }
    block_sum3(d, x, y, red);
    if (threadIdx.x == 0) {
      Region region = Region::Orthogonal;
      s_flag = row_geometry(J, P, t, row, d, x, y, &region) ? 0 : 1;
      s_region = int(region);
    }
    __syncthreads();
    if (s_flag) { __syncthreads(); continue; }
    bool bad = false;
    const double ssa = trim_side(wa, J.imp_old, J.imp_old_dt, off, n, k, S, red, &bad);
    double ssb = 0;
    if (!bad) ssb = trim_side(wb, J.imp_new, J.imp_new_dt, off, n, k, S, red, &bad);
    if (bad) {
      if (threadIdx.x == 0) J.status[row] = kRowBadImportance;
      __syncthreads();
      continue;
    }
    double ta = 0, tb = 0, td = 0;
    if (trim) {
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const double a = wa[j], b = wb[j];
        ta += a * a;
        tb += b * b;
        td += a * b;
      }
      block_sum3(ta, tb, td, red);
    }
    if (threadIdx.x == 0) {
      if (!trim) { ta = x; tb = y; td = d; }
      const double sa = k > 0 ? sqrt(ssa / double(k)) : 0.0;
      const double sb = k > 0 ? sqrt(ssb / double(k)) : 0.0;
      float cn = 0, co = 0;
      row_coefficients(J, P, row, Region(s_region), sa, sb, ta, tb, td, &cn, &co);
      s_cn = cn;
      s_co = co;
    }
    __syncthreads();
    const float cn = s_cn, co = s_co;
    if (J.out != nullptr) {
      if (cn == 0.0f && co == 0.0f) {
        copy_base_row(J, off, n);
      } else {
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
          st1(J.out, J.out_dt, off + j, out_val(ld1(J.base, J.base_dt, off + j), wa[j], wb[j], cn, co));
      }
    }
    __syncthreads();
  }
}

// ---- LoRA Gram path (SPEC §4) -----------------------------------------------------------------
// G[p·ry + q] = Σ_j X[p·n + j]·Y[q·n + j] in f64: one block per Gram entry (r×r is small).
// One block per row (grid-stride): any element whose exponent bits are all ones is inf or NaN.
__global__ void __launch_bounds__(kThreads) check_out_kernel(const void* out, int dt, int64_t rows, int64_t cols, int* status) {
  __shared__ int s_bad;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    if (threadIdx.x == 0) s_bad = 0;
    __syncthreads();
    const int64_t off = row * cols;
    int bad = 0;
    if (dt == 0) {
      const uint32_t* p = static_cast<const uint32_t*>(out) + off;
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) bad |= (p[j] & 0x7F800000u) == 0x7F800000u;
    } else {
      const unsigned short* p = static_cast<const unsigned short*>(out) + off;
      const unsigned short e = dt == 1 ? 0x7C00 : 0x7F80;  // f16 / bf16 exponent bits
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) bad |= (p[j] & e) == e;
    }
    if (bad) s_bad = 1;
    __syncthreads();
    if (threadIdx.x == 0 && s_bad && status[row] == kRowOk) status[row] = kRowNonFiniteOutput;
    __syncthreads();
  }
}

__global__ void __launch_bounds__(kThreads) gram_kernel(const float* X, const float* Y, int64_t n, int64_t ry, double* G) {
  __shared__ double red[32];
  const int64_t e = blockIdx.x;
  const int64_t p = e / ry, q = e % ry;
  const float* x = X + p * n;
  const float* y = Y + q * n;
  double s = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += double(x[j]) * double(y[j]);
  s = block_sum(s, red);
  if (threadIdx.x == 0) G[e] = s;
}

__global__ void quad_kernel(const float* Bx, int64_t rx, const double* G, const float* By, int64_t ry, int64_t m,
                            double scale, double* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m) return;
  const float* bx = Bx + i * rx;
  const float* by = By + i * ry;
  double s = 0;
  for (int64_t p = 0; p < rx; ++p) {
    double u = 0;
    for (int64_t q = 0; q < ry; ++q) u += G[p * ry + q] * double(by[q]);
    s += double(bx[p]) * u;
  }
  out[i] = scale * s;
}

// ---- bench helpers ----------------------------------------------------------------------------
__device__ __forceinline__ uint32_t mix(uint32_t h) {
  h ^= h >> 16; h *= 0x7feb352du; h ^= h >> 15; h *= 0x846ca68bu; h ^= h >> 16;
  return h;
}

__global__ void fill_kernel(void* p, int dt, int64_t n, uint32_t seed, float center, float spread) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t h = mix(uint32_t(i) ^ mix(seed + uint32_t(i >> 32) * 0x9e3779b9u));
    const float u = float(h >> 8) * (1.0f / 16777216.0f);
    st1(p, dt, i, center + spread * (2.0f * u - 1.0f));
  }
}

__global__ void sum_kernel(const void* p, int dt, int64_t n, double* sum) {
  __shared__ double red[32];
  double s = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    s += double(ld1(p, dt, i));
  s = block_sum(s, red);
  if (threadIdx.x == 0) atomicAdd(sum, s);
}

}  // namespace

int general_blocks(int sms, int64_t rows) {
  const int64_t b = int64_t(std::max(sms, 1)) * 8;
  return int(std::max<int64_t>(1, std::min<int64_t>(b, rows)));
}

// The fast kernel's static shared memory (red[3*32] doubles + three scalars = 780 bytes), rounded
// up: the dynamic row cache plus this must stay within the default 48 KiB per block, or the kernel
// must be opted in to more (cudaFuncSetAttribute), else the launch fails with cudaErrorInvalidValue.
constexpr int64_t kFastStaticSmem = 1024;
constexpr int64_t kDefaultSmem = 48 * 1024;

int64_t fast_cache_cols(int smem_optin) {
  // At least two blocks per multiprocessor: at most ~100 KB of cached row per block.
  const int64_t bytes = std::min<int64_t>(smem_optin > 0 ? smem_optin : kDefaultSmem, 100 * 1024) - kFastStaticSmem;
  return bytes / 12;
}

int64_t fast16_cache_cols(int smem_optin) {
  // At least two blocks per multiprocessor (227 KiB on sm_90: ~113 KiB each), 6 bytes per column.
  const int64_t optin = smem_optin > 0 ? smem_optin : kDefaultSmem;
  const int64_t per_block = optin >= 2 * kDefaultSmem ? optin / 2 - 1024 : optin;
  return ((per_block - kFastStaticSmem) / 6) / 8 * 8;
}

cudaError_t launch_edit(const DevJob& job, const Params& p, double t, int64_t k, cudaStream_t stream, int sms,
                        int smem_optin) {
  if (job.rows <= 0) return cudaSuccess;
  const bool has_imp = job.imp_old != nullptr;
  if (needs_general(p, has_imp)) {
    const int grid = int(std::min<int64_t>(job.ws_blocks, job.rows));
    if (grid <= 0) return cudaErrorInvalidValue;
    GEOEDIT_LAUNCH(edit_general_kernel, grid, kThreads, 0, stream)(job, p, t, k);
    return cudaGetLastError();
  }
  const int64_t n = job.cols;
  const int grid = int(std::min<int64_t>(job.rows, int64_t(std::max(sms, 1)) * 32));
  // GEOEDIT_CUDA_NO_SMEM_CACHE=1 forces the read-twice variant (bench/gpu compares both).
  const char* no_cache = std::getenv("GEOEDIT_CUDA_NO_SMEM_CACHE");
  const bool cache_ok = !(no_cache && no_cache[0] == '1');
  // 16-bit inputs: the raw-cache kernel (GEOEDIT_CUDA_NO_FAST16=1 forces the f32-cache kernel,
  // for the bench's comparison).
  const char* no16 = std::getenv("GEOEDIT_CUDA_NO_FAST16");
  const bool all16 = job.base_dt != 0 && job.old_dt != 0 && job.new_dt != 0;
  if (cache_ok && all16 && !(no16 && no16[0] == '1') && n > 0 && n % 8 == 0 && n <= fast16_cache_cols(smem_optin)) {
    const size_t bytes = size_t(n) * 6;
    // (512 threads per block for long rows, tried on the H200, was slower: 0.49 vs 0.38 ms for
    // 8192x14336 bf16.)
    auto kern = edit_fast16_kernel<kThreads, 5>;
    if (int64_t(bytes) + kFastStaticSmem > kDefaultSmem) {
      cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
      if (e != cudaSuccess) return e;
    }
    GEOEDIT_LAUNCH(kern, grid, kThreads, bytes, stream)(job, p, t);
    return cudaGetLastError();
  }
  if (cache_ok && n > 0 && n <= fast_cache_cols(smem_optin)) {
    const size_t bytes = size_t(n) * 12;
    if (int64_t(bytes) + kFastStaticSmem > kDefaultSmem) {
      cudaError_t e = cudaFuncSetAttribute(edit_fast_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
      if (e != cudaSuccess) return e;
    }
    GEOEDIT_LAUNCH(edit_fast_kernel<true>, grid, kThreads, bytes, stream)(job, p, t);
  } else {
    // Rows read twice: keep the rows in flight within ~24 MB so the second read hits L2.
    const auto es = [](int dt) { return int64_t(dt == 0 ? 4 : 2); };
    const int64_t row_bytes = std::max<int64_t>(1, n * (es(job.base_dt) + es(job.old_dt) + es(job.new_dt)));
    const int64_t fit = std::max<int64_t>(int64_t(std::max(sms, 1)) * 2, (int64_t(24) << 20) / row_bytes);
    const int g2 = int(std::min<int64_t>(grid, fit));
    GEOEDIT_LAUNCH(edit_fast_kernel<false>, g2, kThreads, 0, stream)(job, p, t);
  }
  return cudaGetLastError();
}

cudaError_t launch_check_out(const void* out, int out_dt, int64_t rows, int64_t cols, int* status, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0 || out == nullptr) return cudaSuccess;
  const int grid = int(std::min<int64_t>(rows, 4096));
  GEOEDIT_LAUNCH(check_out_kernel, grid, kThreads, 0, stream)(out, out_dt, rows, cols, status);
  return cudaGetLastError();
}

cudaError_t launch_gram(const float* X, int64_t rx, const float* Y, int64_t ry, int64_t n, double* G, cudaStream_t s) {
  if (rx <= 0 || ry <= 0) return cudaSuccess;
  GEOEDIT_LAUNCH(gram_kernel, unsigned(rx * ry), kThreads, 0, s)(X, Y, n, ry, G);
  return cudaGetLastError();
}

cudaError_t launch_quad(const float* Bx, int64_t rx, const double* G, const float* By, int64_t ry, int64_t m,
                        double scale, double* out, cudaStream_t s) {
  if (m <= 0) return cudaSuccess;
  GEOEDIT_LAUNCH(quad_kernel, unsigned((m + 127) / 128), 128, 0, s)(Bx, rx, G, By, ry, m, scale, out);
  return cudaGetLastError();
}

cudaError_t launch_fill(void* p, int dtype, int64_t n, uint32_t seed, float center, float spread, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  const unsigned blocks = unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, 65536));
  GEOEDIT_LAUNCH(fill_kernel, blocks, kThreads, 0, s)(p, dtype, n, seed, center, spread);
  return cudaGetLastError();
}

cudaError_t launch_sum(const void* p, int dtype, int64_t n, double* sum, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  const unsigned blocks = unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, 4096));
  GEOEDIT_LAUNCH(sum_kernel, blocks, kThreads, 0, s)(p, dtype, n, sum);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace geoedit
