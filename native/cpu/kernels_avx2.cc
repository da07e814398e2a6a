// AVX2 + FMA + F16C row kernels. This file alone is built with -mavx2 -mfma -mf16c;
// it is only called after the CPU reported those features (core/dispatch.cc).
#include <immintrin.h>
#include "../core/kernels.h"
#include "../core/dtype.h"
#include "trim_fast.h"
#include "fused_prefetch.h"

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

// ---- top-k: the passes of the vectorised select (trim_fast.h), 8 lanes ----------------------
// Keys are below 2^31 (a cleared sign bit), so signed compares order them; c >= t is c > t - 1.
struct CompressTable {
  uint64_t idx[256];  // for each 8-bit mask, the set lanes' indices packed one per byte
  constexpr CompressTable() : idx() {
    for (int m = 0; m < 256; ++m) {
      uint64_t v = 0;
      int o = 0;
      for (int l = 0; l < 8; ++l)
        if (m & (1 << l)) v |= uint64_t(l) << (8 * o++);
      idx[m] = v;
    }
  }
};
constexpr CompressTable kCompress;

inline __m256i compress8(__m256i v, int mask) {
  return _mm256_permutevar8x32_epi32(v, _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(kCompress.idx[mask]))));
}
inline int mask8(__m256i cmp) { return _mm256_movemask_ps(_mm256_castsi256_ps(cmp)); }

// Row sources of the vectorised select: `block` gives columns [j, j + 16) as two vectors (in any
// lane order: the passes that need the column order use `part`), `part` columns [j, j + 8) in order,
// `one` column j. FloatRow reads a decoded row; RawDiff (the fused row path, below) the raw inputs.
struct FloatRow {
  const float* x;
  inline void block(int64_t j, __m256& v0, __m256& v1) const {
    v0 = _mm256_loadu_ps(x + j);
    v1 = _mm256_loadu_ps(x + j + 8);
  }
  inline __m256 part(int64_t j) const { return _mm256_loadu_ps(x + j); }
  inline float one(int64_t j) const { return x[j]; }
};
inline FloatRow row_of(const float* x) { return FloatRow{x}; }
template <class S>
inline const S& row_of(const S& s) { return s; }

struct Avx2FastPasses {
  template <bool Mag>
  static inline __m256i raw_keys(__m256 x) {
    return Mag ? _mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(0x7fffffff))
               : _mm256_max_epi32(_mm256_castps_si256(x), _mm256_setzero_si256());
  }
  template <bool Mag>
  static inline __m256i keys(__m256 x) {
    const __m256i u = raw_keys<Mag>(x);
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(u, _mm256_set1_epi32(0x7f800000)), u);
  }
  static constexpr int64_t kSmall = 8;
  static uint32_t small_rth(const uint32_t* c, int64_t n, int64_t r, int64_t* gt, int64_t* eq) {
    alignas(32) int32_t xs[8] = {-1, -1, -1, -1, -1, -1, -1, -1}, gs[8], ges[8];
    for (int64_t j = 0; j < n; ++j) xs[j] = int32_t(c[j]);
    const __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(xs));
    const __m256i rot = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);
    __m256i ge = _mm256_setzero_si256(), g = ge, y = x;
    for (int s = 0; s < 8; ++s) {
      // y >= x is not (x > y)
      ge = _mm256_sub_epi32(ge, _mm256_andnot_si256(_mm256_cmpgt_epi32(x, y), _mm256_set1_epi32(-1)));
      g = _mm256_sub_epi32(g, _mm256_cmpgt_epi32(y, x));
      y = _mm256_permutevar8x32_epi32(y, rot);
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(gs), g);
    _mm256_store_si256(reinterpret_cast<__m256i*>(ges), ge);
    for (int l = 0; l < n; ++l)
      if (gs[l] < r && ges[l] >= r) {
        *gt = gs[l];
        *eq = ges[l] - gs[l];
        return uint32_t(xs[l]);
      }
    *gt = 0;  // not reached: 1 <= r <= n
    *eq = 0;
    return 0;
  }
  static int64_t count_ge(const uint32_t* c, int64_t n, uint32_t t) {
    if (t == 0) return n;
    const __m256i vt = _mm256_set1_epi32(int(t - 1));
    __m256i s0 = _mm256_setzero_si256(), s1 = s0;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
      s0 = _mm256_sub_epi32(s0, _mm256_cmpgt_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + j)), vt));
      s1 = _mm256_sub_epi32(s1, _mm256_cmpgt_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + j + 8)), vt));
    }
    alignas(32) int32_t l[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(l), _mm256_add_epi32(s0, s1));
    int64_t r = int64_t(l[0]) + l[1] + l[2] + l[3] + l[4] + l[5] + l[6] + l[7];
    for (; j < n; ++j) r += c[j] >= t ? 1 : 0;
    return r;
  }
  static void sample_bracket(const uint32_t* s, int64_t rh, int64_t rl, uint32_t* hi, uint32_t* lo) {
    __m256i x[16];
    for (int i = 0; i < 16; ++i) x[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + 8 * i));
    auto count = [&](uint32_t t) {
      const __m256i vt = _mm256_set1_epi32(int(t - 1));  // t >= 1 here
      int64_t c = 0;
      for (int i = 0; i < 16; ++i) c += __builtin_popcount(unsigned(mask8(_mm256_cmpgt_epi32(x[i], vt))));
      return c;
    };
    trim_fast_detail::sample_search(count, rh, rl, hi, lo);
  }
  static int64_t compact(uint32_t* c, int64_t n, uint32_t lo, uint32_t hi) {
    const __m256i vlo = _mm256_set1_epi32(int(lo)), vw = _mm256_set1_epi32(int(hi - lo));
    int64_t o = 0, j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256i k = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + j));
      // lo <= k <= hi: k - lo (as unsigned) <= hi - lo; both below 2^31 after the shift by lo
      const __m256i off = _mm256_sub_epi32(k, vlo);
      const int in = 0xff & ~mask8(_mm256_or_si256(_mm256_cmpgt_epi32(off, vw), off));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + o), compress8(k, in));
      o += __builtin_popcount(unsigned(in));
    }
    for (; j < n; ++j) {
      const uint32_t k = c[j];
      c[o] = k;
      o += (k >= lo && k <= hi) ? 1 : 0;
    }
    return o;
  }
  // cand gets k - lo, as the AVX-512 version. Src: a const float* or a row source (below).
  template <bool Mag, class Src>
  static void bracket(const Src& src, int64_t n, uint32_t lo, uint32_t hi, uint32_t* cand, int64_t* above, int64_t* nc) {
    if (hi > 0x7f800000u) hi = 0x7f800000u;
    if (lo > hi) lo = hi;
    const auto& x = row_of(src);
    const __m256i vlo = _mm256_set1_epi32(int(lo)), vw = _mm256_set1_epi32(int(hi - lo));
    const __m256i vh1 = _mm256_set1_epi32(int(hi + 1)), vinf = _mm256_set1_epi32(0x7f800000);
    __m256i va = _mm256_setzero_si256(), vb = va;
    int64_t c = 0, j = 0;
    // with lo = 0 the NaN keys (0) are inside: map them; above that they never are
    const bool map_nan = lo == 0;
    auto step = [&](__m256 xv, __m256i& acc) __attribute__((always_inline)) {
      const __m256i k = map_nan ? keys<Mag>(xv) : raw_keys<Mag>(xv);
      // not above (hi < k <= +inf): (k - hi - 1) or (inf - k) is negative
      acc = _mm256_add_epi32(acc, _mm256_srli_epi32(_mm256_or_si256(_mm256_sub_epi32(k, vh1), _mm256_sub_epi32(vinf, k)), 31));
      const __m256i off = _mm256_sub_epi32(k, vlo);
      // in: 0 <= off <= hi - lo (off is negative below lo; a NaN is above hi)
      const int in = 0xff & ~mask8(_mm256_or_si256(_mm256_cmpgt_epi32(off, vw), off));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(cand + c), compress8(off, in));
      c += __builtin_popcount(unsigned(in));
    };
    for (; j + 16 <= n; j += 16) {
      __m256 v0, v1;
      x.block(j, v0, v1);
      step(v0, va);
      step(v1, vb);
    }
    for (; j + 8 <= n; j += 8) step(x.part(j), va);
    alignas(32) int32_t l[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(l), _mm256_add_epi32(va, vb));
    int64_t not_above = int64_t(l[0]) + l[1] + l[2] + l[3] + l[4] + l[5] + l[6] + l[7];
    int64_t a = j - not_above;
    for (; j < n; ++j) {
      const float xj = x.one(j);
      const uint32_t kj = trim_detail::key_of(Mag ? __builtin_fabsf(xj) : xj);
      a += kj > hi ? 1 : 0;
      cand[c] = kj - lo;
      c += (kj >= lo && kj <= hi) ? 1 : 0;
    }
    *above = hi >= 0x7f800000u ? 0 : a;
    *nc = c;
  }
  template <bool Mag, class Src>
  static void keys(const Src& src, int64_t n, uint32_t* cand) {
    const auto& x = row_of(src);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_si256(reinterpret_cast<__m256i*>(cand + j), keys<Mag>(x.part(j)));
    for (; j < n; ++j) {
      const float xj = x.one(j);
      cand[j] = trim_detail::key_of(Mag ? __builtin_fabsf(xj) : xj);
    }
  }
  template <bool Mag, class Src>
  static int64_t nth_equal(const Src& src, int64_t n, uint32_t kth, int64_t r) {
    const auto& x = row_of(src);
    const __m256i vk = _mm256_set1_epi32(int(kth));
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      unsigned eq = unsigned(mask8(_mm256_cmpeq_epi32(keys<Mag>(x.part(j)), vk)));
      const int c = __builtin_popcount(eq);
      if (c < r) { r -= c; continue; }
      for (; r > 1; --r) eq &= eq - 1;
      return j + __builtin_ctz(eq);
    }
    for (; j < n; ++j) {
      const float xj = x.one(j);
      if (trim_detail::key_of(Mag ? __builtin_fabsf(xj) : xj) == kth && --r == 0) return j;
    }
    return n;
  }
  // Keeps entries with thr <= key <= +inf in [j0, j1) (the tie rule: thr = kth up to the last kept
  // tie, kth + 1 after it).
  template <bool Mag>
  static void apply_range(const float* x, float* v, int64_t j0, int64_t j1, uint32_t thr, __m256d* s, double* acc) {
    const __m256i vk = _mm256_set1_epi32(int(thr)), vinf = _mm256_set1_epi32(0x7f800000);
    int64_t j = j0;
    // thr 0 keeps every entry (NaN too: its key is 0), which the range test below would not
    for (; thr == 0 && j + 8 <= j1; j += 8) {
      const __m256 e = _mm256_loadu_ps(x + j);
      const __m256d e0 = _mm256_cvtps_pd(_mm256_castps256_ps128(e)), e1 = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
      s[0] = _mm256_fmadd_pd(e0, e0, s[0]);
      s[1] = _mm256_fmadd_pd(e1, e1, s[1]);
    }
    for (; j + 8 <= j1; j += 8) {
      const __m256 xv = _mm256_loadu_ps(x + j);
      const __m256i k = raw_keys<Mag>(xv);
      const __m256i drop = _mm256_srai_epi32(_mm256_or_si256(_mm256_sub_epi32(k, vk), _mm256_sub_epi32(vinf, k)), 31);
      const __m256 e = _mm256_castsi256_ps(_mm256_andnot_si256(drop, _mm256_castps_si256(xv)));
      if (Mag) _mm256_storeu_ps(v + j, e);
      else _mm256_storeu_ps(v + j, _mm256_castsi256_ps(_mm256_andnot_si256(drop, _mm256_castps_si256(_mm256_loadu_ps(v + j)))));
      const __m256d e0 = _mm256_cvtps_pd(_mm256_castps256_ps128(e)), e1 = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
      s[0] = _mm256_fmadd_pd(e0, e0, s[0]);
      s[1] = _mm256_fmadd_pd(e1, e1, s[1]);
    }
    for (; j < j1; ++j) {
      const uint32_t kj = trim_detail::key_of(Mag ? __builtin_fabsf(x[j]) : x[j]);
      if (kj >= thr) acc[0] += double(x[j]) * double(x[j]);
      else v[j] = 0.0f;
    }
  }
  template <bool Mag>
  static void apply(const float* x, float* v, int64_t n, uint32_t kth, int64_t last_tie, double* acc) {
    __m256d s[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
    const int64_t split = last_tie >= n ? n : last_tie + 1;
    apply_range<Mag>(x, v, 0, split, kth, s, acc);
    if (split < n) apply_range<Mag>(x, v, split, n, kth + 1, s, acc);
    alignas(32) double l[8];
    _mm256_store_pd(l, s[0]);
    _mm256_store_pd(l + 4, s[1]);
    for (int i = 0; i < 8; ++i) acc[i] += l[i];
  }
};

double trim_avx2(const float* e, float* v, int64_t n, int64_t k, uint32_t* cand, uint32_t* hist) {
  if (n > (int64_t(1) << 30)) return trim_topk_impl(e, v, n, k, cand, hist);
  return trim_fast<Avx2FastPasses, false>(e, v, n, k, cand);
}
double trim_mag_avx2(float* v, int64_t n, int64_t k, uint32_t* cand, uint32_t* hist, float* e, TrimHint* hint) {
  if (n > (int64_t(1) << 30)) return trim_mag_impl(v, n, k, cand, hist, e);
  return trim_fast<Avx2FastPasses, true>(v, v, n, k, cand, hint);
}


// ---- The fused row path (kernels.h FusedRowKernels), 8 lanes ---------------------------------------
// The AVX-512 path's design (kernels_avx512.cc "The fused row path") on 256-bit vectors: the output
// pass in blocks of 16 columns, its last n % 16 columns one at a time with the reference's scalar
// expressions; the stats pass in blocks of 32, then 8-wide vectors, then scalar.

// Columns [j, j + 16) of a raw row of dtype D as two f32 vectors (exact). EO (bf16 only): v0 holds the
// even columns j, j + 2, ..., v1 the odd ones: the 32 loaded bytes shifted and masked, no cross-lane
// shuffle. Otherwise v0 = columns j..j+7, v1 = j+8..j+15.
template <DType D, bool EO>
inline void load16(const void* p, int64_t j, __m256& v0, __m256& v1) {
  if (D == DType::F32) {
    const float* f = static_cast<const float*>(p) + j;
    v0 = _mm256_loadu_ps(f);
    v1 = _mm256_loadu_ps(f + 8);
    return;
  }
  const uint16_t* h = static_cast<const uint16_t*>(p) + j;
  if (D == DType::F16) {
    v0 = load_f16(h);
    v1 = load_f16(h + 8);
  } else if (EO) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h));
    v0 = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
    v1 = _mm256_castsi256_ps(_mm256_and_si256(x, _mm256_set1_epi32(int(0xffff0000u))));
  } else {
    v0 = load_bf16(h);
    v1 = load_bf16(h + 8);
  }
}
// The columns of the lanes of load16's v0 / v1.
template <bool EO>
inline __m256i cols0(int64_t j) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_add_epi32(EO ? _mm256_add_epi32(iota, iota) : iota, _mm256_set1_epi32(int(j)));
}
template <bool EO>
inline __m256i cols1(int64_t j) {
  return _mm256_add_epi32(cols0<EO>(j), _mm256_set1_epi32(EO ? 1 : 8));
}

// a*a in f64 over 8 lanes, added to s[0], s[1].
inline void acc_sq(__m256 a, __m256d* s) {
  const __m256d a0 = _mm256_cvtps_pd(_mm256_castps256_ps128(a)), a1 = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
  s[0] = _mm256_fmadd_pd(a0, a0, s[0]);
  s[1] = _mm256_fmadd_pd(a1, a1, s[1]);
}
// dot += a*b, na += a*a, nb += b*b over 8 lanes, in f64 (s[0..6)).
inline void acc_stats(__m256 a, __m256 b, __m256d* s) {
  const __m256d a0 = _mm256_cvtps_pd(_mm256_castps256_ps128(a)), a1 = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
  const __m256d b0 = _mm256_cvtps_pd(_mm256_castps256_ps128(b)), b1 = _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1));
  s[0] = _mm256_fmadd_pd(a0, b0, s[0]);
  s[1] = _mm256_fmadd_pd(a1, b1, s[1]);
  s[2] = _mm256_fmadd_pd(a0, a0, s[2]);
  s[3] = _mm256_fmadd_pd(a1, a1, s[3]);
  s[4] = _mm256_fmadd_pd(b0, b0, s[4]);
  s[5] = _mm256_fmadd_pd(b1, b1, s[5]);
}

// The fused stats pass of one row as a loop that can be resumed (as kernels_avx512.cc StatsPass): step()
// takes the next 32-column block, finish() the blocks left, the last columns and the sums; fused_stats_t runs
// it alone, the previous row's fused output between its own blocks (kernels.h NextRowStats): the same sums.
template <DType D, bool EO>
struct StatsPass {
  static constexpr int64_t es = D == DType::F32 ? 4 : 2;
  const char *pb, *po, *pn;
  int64_t n, body, j = 0;
  __m256d s[12];
  StatsPass(const void* base, const void* old_, const void* new_, int64_t n_)
      : pb(static_cast<const char*>(base)), po(static_cast<const char*>(old_)), pn(static_cast<const char*>(new_)), n(n_),
        body(n_ & ~int64_t(31)) {
    for (__m256d& v : s) v = _mm256_setzero_pd();
  }
  inline void step() __attribute__((always_inline)) {
    stats_prefetch(pb, po, pn, j, es);
    for (int64_t h = 0; h < 32; h += 16) {
      __m256 b0, b1, o0, o1, w0, w1;
      load16<D, EO>(pb, j + h, b0, b1);
      load16<D, EO>(po, j + h, o0, o1);
      load16<D, EO>(pn, j + h, w0, w1);
      acc_stats(_mm256_sub_ps(o0, b0), _mm256_sub_ps(w0, b0), s);
      acc_stats(_mm256_sub_ps(o1, b1), _mm256_sub_ps(w1, b1), s + 6);
    }
    j += 32;
  }
  // As kernels_avx512.cc StatsPass::block, for the previous row's output block of 16 columns at `at`: a step
  // every other block (TR false), else an L2 prefetch of the next row's lines there.
  template <bool TR>
  __attribute__((always_inline)) inline void block(int64_t at) {
    if (!TR) {
      if ((at & 16) && j < body) step();
      return;
    }
    if ((at * es) % 64 == 0) {
      _mm_prefetch(pb + at * es, _MM_HINT_T1);
      _mm_prefetch(po + at * es, _MM_HINT_T1);
      _mm_prefetch(pn + at * es, _MM_HINT_T1);
    }
  }
  // The blocks left, the last columns and the sums, run on a local copy: the loads go through vector types that
  // may alias anything, so a loop over this object's own members (its address escapes) keeps the twelve
  // accumulators in memory, a store-to-load chain per block (about 2x slower on Zen 4: bench/native/rowpass.cc). The copy never
  // escapes, so its members live in registers.
  __attribute__((always_inline)) inline void finish(double* dot, double* na, double* nb) const {
    StatsPass t = *this;
    t.finish_local(dot, na, nb);
  }
  __attribute__((always_inline)) inline void finish_local(double* dot, double* na, double* nb) {
    while (j < body) step();
    for (; j + 8 <= n; j += 8) {
      const __m256 vb = load8(D, pb, j);
      acc_stats(_mm256_sub_ps(load8(D, po, j), vb), _mm256_sub_ps(load8(D, pn, j), vb), s);
    }
    double d = hsum(_mm256_add_pd(_mm256_add_pd(s[0], s[1]), _mm256_add_pd(s[6], s[7])));
    double x = hsum(_mm256_add_pd(_mm256_add_pd(s[2], s[3]), _mm256_add_pd(s[8], s[9])));
    double y = hsum(_mm256_add_pd(_mm256_add_pd(s[4], s[5]), _mm256_add_pd(s[10], s[11])));
    for (; j < n; ++j) {
      const float bj = load1(D, pb, j), aj = load1(D, po, j) - bj, vj = load1(D, pn, j) - bj;
      d += double(aj) * double(vj);
      x += double(aj) * double(aj);
      y += double(vj) * double(vj);
    }
    *dot = d;
    *na = x;
    *nb = y;
  }
};

template <DType D, bool EO>
void fused_stats_t(const void* base, const void* old_, const void* new_, int64_t n, double* dot, double* na, double* nb) {
  StatsPass<D, EO> st(base, old_, new_, n);
  st.finish(dot, na, nb);
}

// v = x - base read from the raw rows: the row source of the fused select (trim_fast.h select_fast).
template <DType D, bool EO>
struct RawDiff {
  const void* base;
  const void* x;
  int64_t next = 0;  // bytes from a row to the next one, whose lines the blocks prefetch into L2 (0: none)
  inline void block(int64_t j, __m256& v0, __m256& v1) const {
    constexpr int64_t es = D == DType::F32 ? 4 : 2;
    if (next && (j * es) % 64 == 0) {  // a block is 16 columns: one line of f32, half a line of bf16 / f16
      _mm_prefetch(static_cast<const char*>(base) + next + j * es, _MM_HINT_T1);
      _mm_prefetch(static_cast<const char*>(x) + next + j * es, _MM_HINT_T1);
    }
    __m256 b0, b1, x0, x1;
    load16<D, EO>(base, j, b0, b1);
    load16<D, EO>(x, j, x0, x1);
    v0 = _mm256_sub_ps(x0, b0);
    v1 = _mm256_sub_ps(x1, b1);
  }
  inline __m256 part(int64_t j) const { return _mm256_sub_ps(load8(D, x, j), load8(D, base, j)); }
  inline float one(int64_t j) const { return load1(D, x, j) - load1(D, base, j); }
};
template <DType D, bool EO>
inline float sample_at(const RawDiff<D, EO>& r, int64_t j) { return r.one(j); }

template <DType D, bool EO>
RowSelection fused_select_t(const void* base, const void* x, int64_t n, int64_t k, uint32_t* cand, TrimHint* hint, bool prefetch_next) {
  const int64_t next = prefetch_next ? n * (D == DType::F32 ? 4 : 2) : 0;
  const FastSelection s = select_fast<Avx2FastPasses, true>(RawDiff<D, EO>{base, x, next}, n, k, cand, hint);
  return {s.kth, s.last_tie};
}

// Which entries of one side a selection keeps, for the fused output (whose rows are finite: process_rows
// sends a row with a non-finite sum to the unfused steps). With every key finite the tie rule "key > kth,
// or key == kth and column <= last_tie" is a threshold that steps up by one at column last_tie: key > kth - 1
// up to it, key > kth after it, with key = |v| as f32 bits (below 2^31: a signed compare orders them).
struct Keep {
  uint32_t kth = 0;
  int32_t lo = -1, hi = -1;  // the two thresholds minus one (-1: every entry)
  int64_t last;              // >= n: every tie kept (the threshold is lo throughout)
  Keep(const RowSelection* s, int64_t n) : last(n) {
    if (!s) return;
    kth = s->kth;
    lo = int32_t(s->kth) - 1;
    hi = int32_t(s->kth);  // kth < +inf
    last = s->last_tie;
  }
  // The thresholds of 8 lanes of columns `cols`.
  inline __m256i lanes(__m256i cols) const {
    const __m256i after = _mm256_cmpgt_epi32(cols, _mm256_set1_epi32(int(last < (int64_t(1) << 30) ? last : (int64_t(1) << 30))));
    return _mm256_blendv_epi8(_mm256_set1_epi32(lo), _mm256_set1_epi32(hi), after);
  }
  inline bool keeps(float v, int64_t j) const {
    const uint32_t k = abs_bits(v);
    return k > kth || (k == kth && j <= last);
  }
};

// bf16 RNE of v in the high half of each 32-bit lane (the low half is junk), without the NaN case: for
// values of finite rows, where a NaN (only the default NaN of an invalid operation, e.g. inf - inf after an
// overflow) still rounds to a bf16 with an all-ones exponent, which the caller's non-finite check catches
// (and the row is then written again by the unfused steps).
inline __m256i bf16_hi_finite(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  return _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
}

// Consecutive 32-byte vectors of a row's output. NT: streaming stores at 32-byte aligned addresses; where
// the row starts s bytes (a multiple of 4) past such a boundary, each aligned vector is put together from
// two neighbouring ones (one lane rotation and a blend), and the row's first and last partial vectors get
// masked plain stores.
template <bool NT>
struct RowWriter {
  char* d;
  int64_t count = 0;
  uint32_t s = 0;
  __m256i idx, low, head, prev, prev_rot;
  explicit RowWriter(void* dst) : d(static_cast<char*>(dst)) {
    idx = low = head = prev = prev_rot = _mm256_setzero_si256();
    if (!NT) return;
    s = uint32_t(reinterpret_cast<uintptr_t>(dst) & 31);
    const int q = int(s / 4);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    idx = _mm256_and_si256(_mm256_sub_epi32(iota, _mm256_set1_epi32(q)), _mm256_set1_epi32(7));  // lane i <- (i - q) mod 8
    low = _mm256_cmpgt_epi32(_mm256_set1_epi32(q), iota);       // lanes i < q: the previous vector's last q
    head = _mm256_cmpgt_epi32(_mm256_set1_epi32(8 - q), iota);  // the first 32 - s bytes
  }
  inline void put(__m256i v) {
    if (!NT) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + 32 * count), v);
    } else if (s == 0) {
      _mm256_stream_si256(reinterpret_cast<__m256i*>(d + 32 * count), v);
    } else {
      const __m256i r = _mm256_permutevar8x32_epi32(v, idx);
      if (count == 0) _mm256_maskstore_epi32(reinterpret_cast<int*>(d), head, v);
      else _mm256_stream_si256(reinterpret_cast<__m256i*>(d - s + 32 * count), _mm256_blendv_epi8(r, prev_rot, low));
      prev_rot = r;
      prev = v;
    }
    ++count;
  }
  inline void finish() {
    if (NT && s != 0 && count > 0)
      _mm256_maskstore_epi32(reinterpret_cast<int*>(d + 32 * (count - 1)), _mm256_xor_si256(head, _mm256_set1_epi32(-1)), prev);
  }
};

// The fused output of one row (the specialisations as in kernels_avx512.cc fused_output_t, and its -0 rule:
// with co == 0 the old row is read only for a block whose result holds a -0, and only those lanes add co*a~).
// NX: the next row's stats (NextRowStats), a block of them after every other block of this row (StatsPass::block),
// the rest at the end.
template <DType D, bool EO, DType OD, bool NT, bool TA, bool TB, bool UA, bool NX, bool PF>
uint32_t fused_output_t(const void* base, const void* old_, const void* new_, int64_t n, float cn, float co,
                        const RowSelection* sel_a, const RowSelection* sel_b, double* kept_a, double* kept_b, void* dst,
                        NextRowStats* nx) {
  static_assert(!EO || (D == DType::BF16 && OD == DType::BF16), "the even/odd layout is for bf16 rows only");
  static_assert(!(TA && TB) && (UA || !TA), "one trimmed side at most; a trimmed a has co != 0");
  const Keep ka(sel_a, n), kb(sel_b, n);
  const __m256 vcn = _mm256_set1_ps(cn), vco = _mm256_set1_ps(co);
  const __m256i negz = _mm256_set1_epi32(int(0x80000000u)), absm = _mm256_set1_epi32(0x7fffffff);
  __m256i mx = _mm256_setzero_si256(), mx16 = mx;
  // The f64 sum of the kept squares of the trimmed side (dropped lanes are +0 and add nothing). The order
  // of the sum depends on the row only (the same for any thread count).
  __m256d ks[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
  // v with the entries below the lanes' thresholds (Keep) set to +0; the kept squares summed
  auto kept = [&](__m256 v, __m256i thr) __attribute__((always_inline)) {
    const __m256i km = _mm256_cmpgt_epi32(_mm256_and_si256(_mm256_castps_si256(v), absm), thr);
    v = _mm256_and_ps(_mm256_castsi256_ps(km), v);
    acc_sq(v, ks);
    return v;
  };
  // x = base + cn*b~ (+ co*a~ with UA) for 8 lanes; thr_a / thr_b: the lanes' thresholds (Keep)
  auto value = [&](__m256 pb, __m256 a, __m256 b, __m256i thr_a, __m256i thr_b) __attribute__((always_inline)) {
    if (TB) b = kept(b, thr_b);
    __m256 v = _mm256_add_ps(pb, _mm256_mul_ps(vcn, b));
    if (UA) {
      if (TA) a = kept(a, thr_a);
      v = _mm256_add_ps(v, _mm256_mul_ps(vco, a));
    }
    return v;
  };
  RowWriter<NT> w(dst);
  StatsPass<D, D == DType::BF16> next(NX ? nx->base : base, NX ? nx->old_ : old_, NX ? nx->new_ : new_, n);
  const int64_t body = n & ~int64_t(15);
  // Blocks [j0, j1) of 16 columns with the given thresholds of the v0 / v1 lanes (load16's layout).
  auto blocks = [&](int64_t j0, int64_t j1, __m256i ta0, __m256i ta1, __m256i tb0, __m256i tb1) __attribute__((always_inline)) {
    for (int64_t j = j0; j < j1; j += 16) {
      __m256 b0, b1, o0, o1, n0, n1;
      load16<D, EO>(base, j, b0, b1);
      load16<D, EO>(new_, j, n0, n1);
      if (UA) load16<D, EO>(old_, j, o0, o1);
      else o0 = o1 = b0;  // unused
      __m256 r0 = value(b0, _mm256_sub_ps(o0, b0), _mm256_sub_ps(n0, b0), ta0, tb0);
      __m256 r1 = value(b1, _mm256_sub_ps(o1, b1), _mm256_sub_ps(n1, b1), ta1, tb1);
      if (!UA) {
        const __m256i z0 = _mm256_cmpeq_epi32(_mm256_castps_si256(r0), negz), z1 = _mm256_cmpeq_epi32(_mm256_castps_si256(r1), negz);
        if (__builtin_expect(!_mm256_testz_si256(_mm256_or_si256(z0, z1), _mm256_or_si256(z0, z1)), 0)) {  // -0 + co*a: a is never trimmed here
          load16<D, EO>(old_, j, o0, o1);
          r0 = _mm256_blendv_ps(r0, _mm256_add_ps(r0, _mm256_mul_ps(vco, _mm256_sub_ps(o0, b0))), _mm256_castsi256_ps(z0));
          r1 = _mm256_blendv_ps(r1, _mm256_add_ps(r1, _mm256_mul_ps(vco, _mm256_sub_ps(o1, b1))), _mm256_castsi256_ps(z1));
        }
      }
      if (OD == DType::F32) {
        mx = max_abs8(max_abs8(mx, r0), r1);
        w.put(_mm256_castps_si256(r0));
        w.put(_mm256_castps_si256(r1));
      } else if (OD == DType::F16) {
        mx = max_abs8(max_abs8(mx, r0), r1);
        const __m128i h0 = _mm256_cvtps_ph(r0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m128i h1 = _mm256_cvtps_ph(r1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        w.put(_mm256_inserti128_si256(_mm256_castsi128_si256(h0), h1, 1));
      } else {
        __m256i p;
        if (EO) {
          // even columns from r0's lanes, odd ones from r1's: the high halves interleaved in place
          p = _mm256_blend_epi16(_mm256_srli_epi32(bf16_hi_finite(r0), 16), bf16_hi_finite(r1), 0xAA);
        } else {
          // the high halves, in order (packus interleaves the 128-bit halves; the permute undoes it)
          p = _mm256_permute4x64_epi64(_mm256_packus_epi32(_mm256_srli_epi32(bf16_hi_finite(r0), 16), _mm256_srli_epi32(bf16_hi_finite(r1), 16)), 0xD8);
        }
        mx16 = _mm256_max_epu16(mx16, _mm256_slli_epi16(p, 1));  // an all-ones exponent: >= 0xff00
        w.put(p);
      }
      if (NX) next.template block<TA || TB || PF>(j);
    }
  };
  const __m256i lo_a = _mm256_set1_epi32(ka.lo), hi_a = _mm256_set1_epi32(ka.hi);
  const __m256i lo_b = _mm256_set1_epi32(kb.lo), hi_b = _mm256_set1_epi32(kb.hi);
  const int64_t last = TA ? ka.last : TB ? kb.last : n;
  if (last >= body) {
    blocks(0, body, lo_a, lo_a, lo_b, lo_b);
  } else {
    const int64_t jb = last & ~int64_t(15);  // the block holding the last kept tie
    blocks(0, jb, lo_a, lo_a, lo_b, lo_b);
    blocks(jb, jb + 16, ka.lanes(cols0<EO>(jb)), ka.lanes(cols1<EO>(jb)), kb.lanes(cols0<EO>(jb)), kb.lanes(cols1<EO>(jb)));
    blocks(jb + 16, body, hi_a, hi_a, hi_b, hi_b);
  }
  w.finish();
  // The last columns one at a time: the reference's expression (with co*a~ whatever co: no -0 case to mind).
  uint32_t mt = 0;
  double kt = 0;
  for (int64_t j = body; j < n; ++j) {
    const float pb = load1(D, base, j);
    float b = load1(D, new_, j) - pb, a = load1(D, old_, j) - pb;
    if (TB) {
      if (!kb.keeps(b, j)) b = 0.0f;
      kt += double(b) * double(b);
    }
    if (TA) {
      if (!ka.keeps(a, j)) a = 0.0f;
      kt += double(a) * double(a);
    }
    const float o = pb + cn * b;
    const float r = o + co * a;
    mt = abs_bits(r) > mt ? abs_bits(r) : mt;
    if (OD == DType::F32) static_cast<float*>(dst)[j] = r;
    else static_cast<uint16_t*>(dst)[j] = OD == DType::F16 ? f32_to_f16(r) : f32_to_bf16(r);
  }
  if (NX) next.finish(&nx->dot, &nx->na, &nx->nb);
  if (TA || TB) {
    const double kv = hsum(_mm256_add_pd(ks[0], ks[1])) + kt;
    if (TA) *kept_a = kv;
    if (TB) *kept_b = kv;
  }
  if (OD == DType::BF16) {
    if (_mm256_movemask_epi8(_mm256_cmpeq_epi16(_mm256_max_epu16(mx16, _mm256_set1_epi16(short(0xff00))), mx16))) return 0x7f800000u;
    return mt;
  }
  const uint32_t v = hmax8(mx);
  return v > mt ? v : mt;
}


#include "fused_dispatch.h"

}  // namespace

const Kernels kAvx2Kernels = {"avx2", decode_avx2, output_avx2, encode_avx2, trim_avx2, output_nt_avx2, stats_raw_avx2, trim_mag_avx2, &kFused};

}  // namespace geoedit
