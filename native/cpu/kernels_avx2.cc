// AVX2 + FMA + F16C row kernels. This file alone is built with -mavx2 -mfma -mf16c;
// it is only called after the CPU reported those features (core/dispatch.cc).
#include <immintrin.h>
#include "../core/kernels.h"
#include "../core/dtype.h"
#include "trim_impl.h"

namespace geoedit {
namespace {

inline __m256 load_f16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline __m256 load_bf16(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
inline void store_f16(uint16_t* p, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
inline void store_bf16(uint16_t* p, __m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i hi = _mm256_srli_epi32(u, 16);
  const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i nanv = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
  const __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, nanv, isnan);
  __m256i p16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(p16));
}

void decode_avx2(DType dtype, const void* src, float* dst, int64_t n) {
  if (dtype == DType::F32) { std::memcpy(dst, src, size_t(n) * 4); return; }
  const uint16_t* s = static_cast<const uint16_t*>(src);
  int64_t j = 0;
  if (dtype == DType::F16) {
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(dst + j, load_f16(s + j));
    for (; j < n; ++j) dst[j] = f16_to_f32(s[j]);
  } else {
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(dst + j, load_bf16(s + j));
    for (; j < n; ++j) dst[j] = bf16_to_f32(s[j]);
  }
}

inline double hsum(__m256d v) {
  __m128d lo = _mm256_castpd256_pd128(v), hi = _mm256_extractf128_pd(v, 1);
  lo = _mm_add_pd(lo, hi);
  return _mm_cvtsd_f64(_mm_add_sd(lo, _mm_unpackhi_pd(lo, lo)));
}

void encode_avx2(const float* src, DType dtype, void* dst, int64_t n) {
  if (dtype == DType::F32) { std::memcpy(dst, src, size_t(n) * 4); return; }
  uint16_t* d = static_cast<uint16_t*>(dst);
  int64_t j = 0;
  if (dtype == DType::F16) {
    for (; j + 8 <= n; j += 8) store_f16(d + j, _mm256_loadu_ps(src + j));
    for (; j < n; ++j) d[j] = f32_to_f16(src[j]);
  } else {
    for (; j + 8 <= n; j += 8) store_bf16(d + j, _mm256_loadu_ps(src + j));
    for (; j < n; ++j) d[j] = f32_to_bf16(src[j]);
  }
}

// The running max of |o| as f32 bits (unsigned compare: NaN above +inf), and its reduction.
inline __m256i max_abs8(__m256i acc, __m256 o) {
  return _mm256_max_epu32(acc, _mm256_and_si256(_mm256_castps_si256(o), _mm256_set1_epi32(0x7FFFFFFF)));
}
inline uint32_t hmax8(__m256i v) {
  __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4E));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xB1));
  return uint32_t(_mm_cvtsi128_si32(m));
}

uint32_t output_avx2(const float* base, const float* a, const float* b, float cn, float co,
                     int64_t n, DType out_dtype, void* dst) {
  const __m256 vcn = _mm256_set1_ps(cn), vco = _mm256_set1_ps(co);
  int64_t j = 0;
  __m256i acc = _mm256_setzero_si256();
  uint32_t mx = 0;
  auto row = [&](int64_t k) {
    __m256 o = _mm256_add_ps(_mm256_loadu_ps(base + k), _mm256_mul_ps(vcn, _mm256_loadu_ps(b + k)));
    o = _mm256_add_ps(o, _mm256_mul_ps(vco, _mm256_loadu_ps(a + k)));
    acc = max_abs8(acc, o);
    return o;
  };
  auto tail = [&](int64_t k) {
    float o = base[k] + cn * b[k];
    const float v = o + co * a[k];
    mx = abs_bits(v) > mx ? abs_bits(v) : mx;
    return v;
  };
  switch (out_dtype) {
    case DType::F32: {
      float* d = static_cast<float*>(dst);
      for (; j + 8 <= n; j += 8) _mm256_storeu_ps(d + j, row(j));
      for (; j < n; ++j) d[j] = tail(j);
      break;
    }
    case DType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (; j + 8 <= n; j += 8) store_f16(d + j, row(j));
      for (; j < n; ++j) d[j] = f32_to_f16(tail(j));
      break;
    }
    case DType::BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (; j + 8 <= n; j += 8) store_bf16(d + j, row(j));
      for (; j < n; ++j) d[j] = f32_to_bf16(tail(j));
      break;
    }
  }
  const uint32_t v = hmax8(acc);
  return v > mx ? v : mx;
}

uint32_t output_nt_avx2(const float* base, const float* a, const float* b, float cn, float co,
                        int64_t n, DType out_dtype, void* dst) {
  const size_t es = out_dtype == DType::F32 ? 4 : 2;
  const size_t align = es * 8;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(dst);
  // Plain stores up to the first aligned vector, streaming stores for the body, plain for the tail.
  const int64_t head = addr % es != 0 ? n : int64_t(((align - addr % align) % align) / es);
  if (head + 8 > n) return output_avx2(base, a, b, cn, co, n, out_dtype, dst);
  uint32_t mx = 0;
  if (head > 0) mx = output_avx2(base, a, b, cn, co, head, out_dtype, dst);
  __m256i acc = _mm256_setzero_si256();
  base += head; a += head; b += head; n -= head;
  dst = static_cast<char*>(dst) + head * es;
  const __m256 vcn = _mm256_set1_ps(cn), vco = _mm256_set1_ps(co);
  const int64_t body = n & ~int64_t(7);
  for (int64_t j = 0; j < body; j += 8) {
    __m256 o = _mm256_add_ps(_mm256_loadu_ps(base + j), _mm256_mul_ps(vcn, _mm256_loadu_ps(b + j)));
    o = _mm256_add_ps(o, _mm256_mul_ps(vco, _mm256_loadu_ps(a + j)));
    acc = max_abs8(acc, o);
    if (out_dtype == DType::F32) {
      _mm256_stream_ps(static_cast<float*>(dst) + j, o);
    } else {
      alignas(16) uint16_t tmp[8];
      if (out_dtype == DType::F16) store_f16(tmp, o); else store_bf16(tmp, o);
      _mm_stream_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(dst) + j), _mm_load_si128(reinterpret_cast<const __m128i*>(tmp)));
    }
  }
  if (body < n) {
    const uint32_t t = output_avx2(base + body, a + body, b + body, cn, co, n - body, out_dtype, static_cast<char*>(dst) + body * es);
    mx = t > mx ? t : mx;
  }
  const uint32_t v = hmax8(acc);
  return v > mx ? v : mx;
}

inline __m256 load8(DType d, const void* p, int64_t j) {
  switch (d) {
    case DType::F32: return _mm256_loadu_ps(static_cast<const float*>(p) + j);
    case DType::F16: return load_f16(static_cast<const uint16_t*>(p) + j);
    default: return load_bf16(static_cast<const uint16_t*>(p) + j);
  }
}
inline float load1(DType d, const void* p, int64_t j) {
  switch (d) {
    case DType::F32: return static_cast<const float*>(p)[j];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[j]);
    default: return bf16_to_f32(static_cast<const uint16_t*>(p)[j]);
  }
}

void stats_raw_avx2(DType bd, const void* base, DType od, const void* old_, DType nd, const void* new_,
                    int64_t n, float* base_out, float* a, float* b, double* dot, double* na, double* nb) {
  __m256d d0 = _mm256_setzero_pd(), d1 = d0, x0 = d0, x1 = d0, y0 = d0, y1 = d0;
  const size_t bs = bd == DType::F32 ? 4 : 2, os = od == DType::F32 ? 4 : 2, ns = nd == DType::F32 ? 4 : 2;
  const char* pb = static_cast<const char*>(base);
  const char* po = static_cast<const char*>(old_);
  const char* pn = static_cast<const char*>(new_);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    // as in the AVX-512 kernel: prefetch 256 elements ahead (into the next row at the end; a
    // prefetch never faults)
    _mm_prefetch(pb + (j + 256) * bs, _MM_HINT_T0);
    _mm_prefetch(po + (j + 256) * os, _MM_HINT_T0);
    _mm_prefetch(pn + (j + 256) * ns, _MM_HINT_T0);
    const __m256 vb = load8(bd, base, j);
    const __m256 va = _mm256_sub_ps(load8(od, old_, j), vb);
    const __m256 vn = _mm256_sub_ps(load8(nd, new_, j), vb);
    if (base_out) _mm256_storeu_ps(base_out + j, vb);
    _mm256_storeu_ps(a + j, va);
    _mm256_storeu_ps(b + j, vn);
    const __m256d a0 = _mm256_cvtps_pd(_mm256_castps256_ps128(va)), a1 = _mm256_cvtps_pd(_mm256_extractf128_ps(va, 1));
    const __m256d b0 = _mm256_cvtps_pd(_mm256_castps256_ps128(vn)), b1 = _mm256_cvtps_pd(_mm256_extractf128_ps(vn, 1));
    d0 = _mm256_fmadd_pd(a0, b0, d0); d1 = _mm256_fmadd_pd(a1, b1, d1);
    x0 = _mm256_fmadd_pd(a0, a0, x0); x1 = _mm256_fmadd_pd(a1, a1, x1);
    y0 = _mm256_fmadd_pd(b0, b0, y0); y1 = _mm256_fmadd_pd(b1, b1, y1);
  }
  double d = hsum(_mm256_add_pd(d0, d1)), x = hsum(_mm256_add_pd(x0, x1)), y = hsum(_mm256_add_pd(y0, y1));
  for (; j < n; ++j) {
    const float bj0 = load1(bd, base, j);
    const float aj = load1(od, old_, j) - bj0, bj = load1(nd, new_, j) - bj0;
    if (base_out) base_out[j] = bj0;
    a[j] = aj; b[j] = bj;
    d += double(aj) * double(bj); x += double(aj) * double(aj); y += double(bj) * double(bj);
  }
  *dot = d; *na = x; *nb = y;
}

}  // namespace

const Kernels kAvx2Kernels = {"avx2", decode_avx2, output_avx2, encode_avx2, trim_topk_impl, output_nt_avx2, stats_raw_avx2};

}  // namespace geoedit
