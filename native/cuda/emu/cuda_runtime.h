// A CPU stand-in for <cuda_runtime.h>, used only to build geoedit_cuda_emu: the plugin's own
// source (native/cuda/*.cu) compiled as C++ and run on the CPU, one cooperative fiber per CUDA
// thread, so the kernels' logic (barriers, warp shuffles, radix select, streaming, the C ABI) is
// tested on machines without a GPU. It checks logic, not speed or the GPU memory model.
#pragma once

#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <tuple>
#include <utility>

#include "../../core/dtype.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3() = default;
  dim3(unsigned a, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct alignas(16) float4 { float x, y, z, w; };
struct uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }

namespace emu {
extern dim3 g_block_idx, g_block_dim, g_grid_dim;
dim3 thread_idx();
void syncthreads();
int syncthreads_or(int p);
void warp_exchange(const void* v, void* out, int src_lane, size_t bytes);
void* dynamic_smem();
void run(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body);

template <class K>
struct Launcher {
  K k;
  dim3 g, b;
  size_t smem;
  template <class... A>
  void operator()(A&&... a) {
    auto args = std::make_tuple(a...);
    run(g, b, smem, [&]() { std::apply(k, args); });
  }
};
template <class K>
Launcher<K> launcher(K k, dim3 g, dim3 b, size_t smem) { return Launcher<K>{k, g, b, smem}; }
}  // namespace emu

#define threadIdx (::emu::thread_idx())
#define blockIdx (::emu::g_block_idx)
#define blockDim (::emu::g_block_dim)
#define gridDim (::emu::g_grid_dim)
#define GEOEDIT_LAUNCH(kernel, grid, block, smem, stream) ::emu::launcher(kernel, dim3(unsigned(grid)), dim3(unsigned(block)), size_t(smem))
#define GEOEDIT_DYNAMIC_SMEM(type, name) type* name = reinterpret_cast<type*>(::emu::dynamic_smem())

// ---- device intrinsics ----------------------------------------------------------------------
inline void __syncthreads() { emu::syncthreads(); }
inline int __syncthreads_or(int p) { return emu::syncthreads_or(p); }
template <class T>
T __shfl_down_sync(unsigned, T v, int o) {
  const int lane = int(threadIdx.x & 31u), src = lane + o;
  T r;
  emu::warp_exchange(&v, &r, src < 32 ? src : lane, sizeof(T));
  return r;
}
template <class T>
T __shfl_up_sync(unsigned, T v, int o) {
  const int lane = int(threadIdx.x & 31u), src = lane - o;
  T r;
  emu::warp_exchange(&v, &r, src >= 0 ? src : lane, sizeof(T));
  return r;
}
template <class T>
T __ldg(const T* p) { return *p; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline uint32_t __float_as_uint(float f) { return geoedit::f32_bits(f); }
inline float __uint_as_float(uint32_t u) { return geoedit::f32_from_bits(u); }
struct __half { unsigned short x; };
inline __half __ushort_as_half(unsigned short h) { return __half{h}; }
inline unsigned short __half_as_ushort(__half h) { return h.x; }
inline float __half2float(__half h) { return geoedit::f16_to_f32(h.x); }
inline __half __float2half_rn(float f) { return __half{geoedit::f32_to_f16(f)}; }
// Fibers are cooperative on one OS thread: a read-modify-write is never interleaved.
inline unsigned atomicAdd(unsigned* p, unsigned v) { const unsigned o = *p; *p = o + v; return o; }
inline double atomicAdd(double* p, double v) { const double o = *p; *p = o + v; return o; }

// ---- runtime API ----------------------------------------------------------------------------
typedef int cudaError_t;
enum : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
};
typedef struct emu_stream* cudaStream_t;
typedef struct emu_event* cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
#define cudaStreamNonBlocking 0x01
#define cudaHostAllocDefault 0x00
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int major, minor, multiProcessorCount;
};

const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t emu_malloc(void** p, size_t n);
template <class T>
cudaError_t cudaMalloc(T** p, size_t n) { return emu_malloc(reinterpret_cast<void**>(p), n); }
inline cudaError_t cudaFree(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaHostAlloc(void** p, size_t n, unsigned) { return emu_malloc(p, n); }
inline cudaError_t cudaFreeHost(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) { if (n) std::memmove(d, s, n); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t = nullptr) { return cudaMemcpy(d, s, n, k); }
inline cudaError_t cudaMemset(void* d, int v, size_t n) { std::memset(d, v, n); return cudaSuccess; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { *s = reinterpret_cast<cudaStream_t>(std::malloc(1)); return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int dev);
template <class T>
cudaError_t cudaFuncSetAttribute(T, cudaFuncAttribute, int) { return cudaSuccess; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaMemGetInfo(size_t* f, size_t* t) { *f = size_t(8) << 30; *t = size_t(16) << 30; return cudaSuccess; }
inline cudaError_t cudaRuntimeGetVersion(int* v) { *v = 13000; return cudaSuccess; }
inline cudaError_t cudaDriverGetVersion(int* v) { *v = 13000; return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* c) { *c = 1; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int dev);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b);
