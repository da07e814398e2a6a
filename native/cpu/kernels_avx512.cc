// AVX-512 (F, BW, VL, DQ) row kernels, built with their own flags; called only after the
// CPU reported those features (core/dispatch.cc). Tails use masked loads and stores.
#include <immintrin.h>
#include "../core/kernels.h"
#include "../core/dtype.h"
#include "trim_fast.h"
#include "fused_prefetch.h"

namespace geoedit {
namespace {

inline __mmask16 tail_mask(int64_t left) { return left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u); }

inline __m512 load_f16(const uint16_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
inline __m512 load_bf16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
inline __m256i to_f16(__m512 v) { return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline __m256i to_bf16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i hi = _mm512_srli_epi32(u, 16);
  const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 isnan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  r = _mm512_mask_blend_epi32(isnan, r, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}

void decode_avx512(DType dtype, const void* src, float* dst, int64_t n) {
  if (dtype == DType::F32) { std::memcpy(dst, src, size_t(n) * 4); return; }
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    _mm512_mask_storeu_ps(dst + j, m, dtype == DType::F16 ? load_f16(s + j, m) : load_bf16(s + j, m));
  }
}

// The running max of |o| as f32 bits (unsigned compare: NaN above +inf).
inline __m512i max_abs16(__m512i acc, __m512 o) {
  return _mm512_max_epu32(acc, _mm512_and_si512(_mm512_castps_si512(o), _mm512_set1_epi32(0x7FFFFFFF)));
}

// Returns the max |o| bits (lanes past n load as 0, so they add nothing).
template <typename Store>
inline uint32_t output_loop(const float* base, const float* a, const float* b, float cn, float co, int64_t n, Store store) {
  const __m512 vcn = _mm512_set1_ps(cn), vco = _mm512_set1_ps(co);
  __m512i acc = _mm512_setzero_si512();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    __m512 o = _mm512_add_ps(_mm512_maskz_loadu_ps(m, base + j), _mm512_mul_ps(vcn, _mm512_maskz_loadu_ps(m, b + j)));
    o = _mm512_add_ps(o, _mm512_mul_ps(vco, _mm512_maskz_loadu_ps(m, a + j)));
    acc = _mm512_mask_mov_epi32(acc, m, max_abs16(acc, o));
    store(j, m, o);
  }
  return _mm512_reduce_max_epu32(acc);
}

uint32_t output_avx512(const float* base, const float* a, const float* b, float cn, float co,
                       int64_t n, DType out_dtype, void* dst) {
  if (out_dtype == DType::F32) {
    float* d = static_cast<float*>(dst);
    return output_loop(base, a, b, cn, co, n, [&](int64_t j, __mmask16 m, __m512 v) { _mm512_mask_storeu_ps(d + j, m, v); });
  }
  uint16_t* d = static_cast<uint16_t*>(dst);
  if (out_dtype == DType::F16)
    return output_loop(base, a, b, cn, co, n, [&](int64_t j, __mmask16 m, __m512 v) { _mm256_mask_storeu_epi16(d + j, m, to_f16(v)); });
  return output_loop(base, a, b, cn, co, n, [&](int64_t j, __mmask16 m, __m512 v) { _mm256_mask_storeu_epi16(d + j, m, to_bf16(v)); });
}

void encode_avx512(const float* src, DType dtype, void* dst, int64_t n) {
  if (dtype == DType::F32) { std::memcpy(dst, src, size_t(n) * 4); return; }
  uint16_t* d = static_cast<uint16_t*>(dst);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    const __m512 v = _mm512_maskz_loadu_ps(m, src + j);
    _mm256_mask_storeu_epi16(d + j, m, dtype == DType::F16 ? to_f16(v) : to_bf16(v));
  }
}

uint32_t output_nt_avx512(const float* base, const float* a, const float* b, float cn, float co,
                          int64_t n, DType out_dtype, void* dst) {
  const size_t es = out_dtype == DType::F32 ? 4 : 2;
  const size_t align = es * 16;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(dst);
  // Plain stores up to the first aligned vector, streaming stores for the body, plain for the tail.
  const int64_t head = addr % es != 0 ? n : int64_t(((align - addr % align) % align) / es);
  if (head + 16 > n) return output_avx512(base, a, b, cn, co, n, out_dtype, dst);
  uint32_t mx = 0;
  if (head > 0) mx = output_avx512(base, a, b, cn, co, head, out_dtype, dst);
  __m512i acc = _mm512_setzero_si512();
  base += head; a += head; b += head; n -= head;
  dst = static_cast<char*>(dst) + head * es;
  const __m512 vcn = _mm512_set1_ps(cn), vco = _mm512_set1_ps(co);
  const int64_t body = n & ~int64_t(15);
  for (int64_t j = 0; j < body; j += 16) {
    __m512 o = _mm512_add_ps(_mm512_loadu_ps(base + j), _mm512_mul_ps(vcn, _mm512_loadu_ps(b + j)));
    o = _mm512_add_ps(o, _mm512_mul_ps(vco, _mm512_loadu_ps(a + j)));
    acc = max_abs16(acc, o);
    if (out_dtype == DType::F32) _mm512_stream_ps(static_cast<float*>(dst) + j, o);
    else _mm256_stream_si256(reinterpret_cast<__m256i*>(static_cast<uint16_t*>(dst) + j), out_dtype == DType::F16 ? to_f16(o) : to_bf16(o));
  }
  if (body < n) {
    const uint32_t t = output_avx512(base + body, a + body, b + body, cn, co, n - body, out_dtype, static_cast<char*>(dst) + body * es);
    mx = t > mx ? t : mx;
  }
  const uint32_t v = _mm512_reduce_max_epu32(acc);
  return v > mx ? v : mx;
}

inline __m512 load16(DType d, const void* p, int64_t j, __mmask16 m) {
  switch (d) {
    case DType::F32: return _mm512_maskz_loadu_ps(m, static_cast<const float*>(p) + j);
    case DType::F16: return load_f16(static_cast<const uint16_t*>(p) + j, m);
    default: return load_bf16(static_cast<const uint16_t*>(p) + j, m);
  }
}

void stats_raw_avx512(DType bd, const void* base, DType od, const void* old_, DType nd, const void* new_,
                      int64_t n, float* base_out, float* a, float* b, double* dot, double* na, double* nb) {
  __m512d d0 = _mm512_setzero_pd(), d1 = d0, x0 = d0, x1 = d0, y0 = d0, y1 = d0;
  const size_t bs = bd == DType::F32 ? 4 : 2, os = od == DType::F32 ? 4 : 2, ns = nd == DType::F32 ? 4 : 2;
  const char* pb = static_cast<const char*>(base);
  const char* po = static_cast<const char*>(old_);
  const char* pn = static_cast<const char*>(new_);
  const int64_t ahead = 256;  // elements: keeps more lines in flight than the OoO window would
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    // Past the row's end this reaches into the next row (rows are contiguous); a prefetch never
    // faults, so running past the tensor's end is harmless.
    _mm_prefetch(pb + (j + ahead) * bs, _MM_HINT_T0);
    _mm_prefetch(po + (j + ahead) * os, _MM_HINT_T0);
    _mm_prefetch(pn + (j + ahead) * ns, _MM_HINT_T0);
    const __m512 vb = load16(bd, base, j, m);
    const __m512 va = _mm512_sub_ps(load16(od, old_, j, m), vb);
    const __m512 vn = _mm512_sub_ps(load16(nd, new_, j, m), vb);
    if (base_out) _mm512_mask_storeu_ps(base_out + j, m, vb);
    _mm512_mask_storeu_ps(a + j, m, va);
    _mm512_mask_storeu_ps(b + j, m, vn);
    const __m512d a0 = _mm512_cvtps_pd(_mm512_castps512_ps256(va));
    const __m512d a1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(va), 1)));
    const __m512d b0 = _mm512_cvtps_pd(_mm512_castps512_ps256(vn));
    const __m512d b1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(vn), 1)));
    d0 = _mm512_fmadd_pd(a0, b0, d0); d1 = _mm512_fmadd_pd(a1, b1, d1);
    x0 = _mm512_fmadd_pd(a0, a0, x0); x1 = _mm512_fmadd_pd(a1, a1, x1);
    y0 = _mm512_fmadd_pd(b0, b0, y0); y1 = _mm512_fmadd_pd(b1, b1, y1);
  }
  *dot = _mm512_reduce_add_pd(_mm512_add_pd(d0, d1));
  *na = _mm512_reduce_add_pd(_mm512_add_pd(x0, x1));
  *nb = _mm512_reduce_add_pd(_mm512_add_pd(y0, y1));
}

inline __m512i keys16(const float* e, __mmask16 m) {
  const __m512i x = _mm512_maskz_loadu_epi32(m, e);
  const __m512i mag = _mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 zero = _mm512_cmpgt_epu32_mask(mag, _mm512_set1_epi32(0x7f800000)) | _mm512_cmplt_epi32_mask(x, _mm512_setzero_si512());
  return _mm512_maskz_mov_epi32(_knot_mask16(zero), mag);
}

struct Avx512TrimPasses {
  static void bracket(const float* e, int64_t n, uint32_t lo, uint32_t hi, uint32_t* cand, int64_t* above, int64_t* nc) {
    const __m512i vlo = _mm512_set1_epi32(int(lo)), vhi = _mm512_set1_epi32(int(hi));
    int64_t a = 0, c = 0;
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 m = tail_mask(n - j);
      const __m512i k = keys16(e + j, m);
      a += __builtin_popcount(_mm512_mask_cmpgt_epu32_mask(m, k, vhi));
      const __mmask16 in = _mm512_mask_cmpge_epu32_mask(m, k, vlo) & _mm512_cmple_epu32_mask(k, vhi);
      // register compress + plain store (the memory form is slow on some cores); cand has n+16 room
      _mm512_storeu_si512(cand + c, _mm512_maskz_compress_epi32(in, k));
      c += __builtin_popcount(in);
    }
    *above = a;
    *nc = c;
  }
  static void apply(const float* e, float* v, int64_t n, uint32_t kth, int64_t last_tie, double* acc) {
    const __m512i vk = _mm512_set1_epi32(int(kth));
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i vlast = _mm512_set1_epi32(int(last_tie > 0x7fffffff ? 0x7fffffff : last_tie));
    __m512d a0 = _mm512_loadu_pd(acc), a1 = _mm512_setzero_pd();
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 m = tail_mask(n - j);
      const __m512i k = keys16(e + j, m);
      const __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(int(j)));
      const __mmask16 keep = (_mm512_cmpgt_epu32_mask(k, vk) | (_mm512_cmpeq_epi32_mask(k, vk) & _mm512_cmple_epi32_mask(idx, vlast))) & m;
      _mm512_mask_storeu_ps(v + j, m, _mm512_maskz_loadu_ps(keep, v + j));
      const __m512 ev = _mm512_maskz_loadu_ps(m, e + j);
      const __m512d e0 = _mm512_cvtps_pd(_mm512_castps512_ps256(ev));
      const __m512d e1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(ev), 1)));
      a0 = _mm512_mask3_fmadd_pd(e0, e0, a0, __mmask8(keep));
      a1 = _mm512_mask3_fmadd_pd(e1, e1, a1, __mmask8(keep >> 8));
    }
    _mm512_storeu_pd(acc, _mm512_add_pd(a0, a1));
  }
};

// Row sources of the vectorised select: `block` gives columns [j, j + 32) as two vectors (in any
// lane order: the passes that need the column order use `part`), `part` columns [j, j + 16) of a
// mask (lanes past it 0), in order. FloatRow reads a decoded row; RawDiff (below) the raw inputs.
struct FloatRow {
  const float* x;
  inline void block(int64_t j, __m512& v0, __m512& v1) const {
    v0 = _mm512_loadu_ps(x + j);
    v1 = _mm512_loadu_ps(x + j + 16);
  }
  inline __m512 part(int64_t j, __mmask16 m) const { return _mm512_maskz_loadu_ps(m, x + j); }
};
inline FloatRow row_of(const float* x) { return FloatRow{x}; }
template <class S>
inline const S& row_of(const S& s) { return s; }

// Row sources whose values are all finite (the fused path's rows: process_rows sends a row with a
// non-finite value to the unfused steps): their keys need no NaN mapping and none is +inf.
template <class S>
struct FiniteRow {
  static constexpr bool value = false;
};

// The passes of the vectorised select (trim_fast.h).
struct Avx512FastPasses {
  template <bool Mag>
  static inline __m512i keys(__m512 x) {
    // Mag: |x|; else negatives (and -0) -> 0 by a signed max. Then NaN (above +inf) -> 0.
    const __m512i u = Mag ? _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff))
                          : _mm512_max_epi32(_mm512_castps_si512(x), _mm512_setzero_si512());
    return _mm512_mask_mov_epi32(u, _mm512_cmpgt_epi32_mask(u, _mm512_set1_epi32(0x7f800000)), _mm512_setzero_si512());
  }
  static constexpr int64_t kSmall = 16;
  // The r-th largest of n <= 16 keys (all below 2^31): each key counts the keys >= it and > it,
  // comparing against the vector rotated lane by lane; padding lanes are -1 (below every key).
  static uint32_t small_rth(const uint32_t* c, int64_t n, int64_t r, int64_t* gt, int64_t* eq) {
    const __mmask16 m = tail_mask(n);
    const __m512i x = _mm512_mask_loadu_epi32(_mm512_set1_epi32(-1), m, c);
    const __m512i rot = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0), one = _mm512_set1_epi32(1);
    __m512i ge = _mm512_setzero_si512(), g = ge, y = x;
    for (int s = 0; s < 16; ++s) {
      ge = _mm512_mask_add_epi32(ge, _mm512_cmpge_epi32_mask(y, x), ge, one);
      g = _mm512_mask_add_epi32(g, _mm512_cmpgt_epi32_mask(y, x), g, one);
      y = _mm512_permutexvar_epi32(rot, y);
    }
    const __m512i vr = _mm512_set1_epi32(int(r));
    const __mmask16 hit = m & _mm512_cmplt_epi32_mask(g, vr) & _mm512_cmpge_epi32_mask(ge, vr);
    alignas(64) uint32_t xs[16], gs[16], ges[16];
    _mm512_store_si512(xs, x);
    _mm512_store_si512(gs, g);
    _mm512_store_si512(ges, ge);
    const int l = hit ? __builtin_ctz(hit) : 0;  // hit is never empty: 1 <= r <= n
    *gt = gs[l];
    *eq = int64_t(ges[l]) - int64_t(gs[l]);
    return xs[l];
  }
  static int64_t count_ge(const uint32_t* c, int64_t n, uint32_t t) {
    const __m512i vt = _mm512_set1_epi32(int(t)), one = _mm512_set1_epi32(1);
    if (n <= 64) {  // a short set: mask popcounts have less latency than a vector reduction
      int64_t s = 0;
      for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = tail_mask(n - j);
        s += __builtin_popcount(_mm512_mask_cmpge_epu32_mask(m, _mm512_maskz_loadu_epi32(m, c + j), vt));
      }
      return s;
    }
    __m512i s0 = _mm512_setzero_si512(), s1 = s0;
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
      s0 = _mm512_mask_add_epi32(s0, _mm512_cmpge_epu32_mask(_mm512_loadu_si512(c + j), vt), s0, one);
      s1 = _mm512_mask_add_epi32(s1, _mm512_cmpge_epu32_mask(_mm512_loadu_si512(c + j + 16), vt), s1, one);
    }
    for (; j < n; j += 16) {
      const __mmask16 m = tail_mask(n - j);
      s0 = _mm512_mask_add_epi32(s0, _mm512_mask_cmpge_epu32_mask(m, _mm512_maskz_loadu_epi32(m, c + j), vt), s0, one);
    }
    return _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));
  }
  static void sample_bracket(const uint32_t* s, int64_t rh, int64_t rl, uint32_t* hi, uint32_t* lo) {
    __m512i x[8];
    for (int i = 0; i < 8; ++i) x[i] = _mm512_loadu_si512(s + 16 * i);
    auto count = [&](uint32_t t) {
      const __m512i vt = _mm512_set1_epi32(int(t));
      uint64_t c = 0;
      for (int i = 0; i < 8; i += 4) {
        const __mmask64 a = _mm512_kunpackd(_mm512_kunpackw(_mm512_cmpge_epu32_mask(x[i + 3], vt), _mm512_cmpge_epu32_mask(x[i + 2], vt)),
                                            _mm512_kunpackw(_mm512_cmpge_epu32_mask(x[i + 1], vt), _mm512_cmpge_epu32_mask(x[i], vt)));
        c += uint64_t(__builtin_popcountll(a));
      }
      return int64_t(c);
    };
    trim_fast_detail::sample_search(count, rh, rl, hi, lo);
  }
  static int64_t compact(uint32_t* c, int64_t n, uint32_t lo, uint32_t hi) {
    const __m512i vlo = _mm512_set1_epi32(int(lo)), vhi = _mm512_set1_epi32(int(hi));
    int64_t o = 0;
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 m = tail_mask(n - j);
      const __m512i k = _mm512_maskz_loadu_epi32(m, c + j);
      const __mmask16 in = _mm512_mask_cmple_epu32_mask(_mm512_mask_cmpge_epu32_mask(m, k, vlo), k, vhi);
      _mm512_mask_storeu_epi32(c + o, tail_mask(__builtin_popcount(in)), _mm512_maskz_compress_epi32(in, k));
      o += __builtin_popcount(in);
    }
    return o;
  }
  // Keys without the NaN mapping: NaN stays above +inf, and every comparison below is a range
  // test against bounds <= +inf ((k - lo) <= (hi - lo) unsigned), so a NaN is never inside one.
  template <bool Mag>
  static inline __m512i raw_keys(__m512 x) {
    return Mag ? _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff))
               : _mm512_max_epi32(_mm512_castps_si512(x), _mm512_setzero_si512());
  }
  // cand gets k - lo (the offset in the bracket: spread evenly over [0, hi - lo], which the
  // bit-by-bit select narrows fastest).
  template <bool Mag, class Src>
  static void bracket(const Src& src, int64_t n, uint32_t lo, uint32_t hi, uint32_t* cand, int64_t* above, int64_t* nc) {
    if (hi > 0x7f800000u) hi = 0x7f800000u;
    if (lo > hi) lo = hi;
    if constexpr (Mag && FiniteRow<Src>::value) {
      // finite keys (|v| bits, below +inf): "above" is one compare, counted in the lanes
      const __m512i vlo = _mm512_set1_epi32(int(lo)), vw = _mm512_set1_epi32(int(hi - lo)), vhi = _mm512_set1_epi32(int(hi));
      const __m512i one = _mm512_set1_epi32(1), absm = _mm512_set1_epi32(0x7fffffff);
      __m512i va = _mm512_setzero_si512(), vb = va;
      int64_t c = 0, j = 0;
      auto step = [&](__m512 v, __mmask16 m, __m512i& acc) __attribute__((always_inline)) {
        const __m512i k = _mm512_and_si512(_mm512_castps_si512(v), absm);
        acc = _mm512_mask_add_epi32(acc, _mm512_cmpgt_epu32_mask(k, vhi), acc, one);  // lanes past n: key 0, never above
        const __m512i off = _mm512_sub_epi32(k, vlo);
        const __mmask16 in = _mm512_mask_cmple_epu32_mask(m, off, vw);
        _mm512_storeu_si512(cand + c, _mm512_maskz_compress_epi32(in, off));
        c += __builtin_popcount(in);
      };
      for (; j + 32 <= n; j += 32) {
        __m512 v0, v1;
        src.block(j, v0, v1);
        step(v0, 0xffff, va);
        step(v1, 0xffff, vb);
      }
      for (; j < n; j += 16) {
        const __mmask16 m = tail_mask(n - j);
        step(src.part(j, m), m, va);
      }
      *above = _mm512_reduce_add_epi32(_mm512_add_epi32(va, vb));
      *nc = c;
      return;
    }
    const __m512i vlo = _mm512_set1_epi32(int(lo)), vw = _mm512_set1_epi32(int(hi - lo));
    const __m512i vh1 = _mm512_set1_epi32(int(hi + 1)), vinf = _mm512_set1_epi32(0x7f800000);
    __m512i va = _mm512_setzero_si512(), vb = va;
    int64_t c = 0, j = 0;
    auto step = [&](__m512i k, __mmask16 m, __m512i& acc) {
      // not above (hi < k <= +inf): (k - hi - 1) or (inf - k) is negative (keys are below 2^31)
      const __m512i t = _mm512_or_si512(_mm512_sub_epi32(k, vh1), _mm512_sub_epi32(vinf, k));
      acc = _mm512_add_epi32(acc, _mm512_srli_epi32(t, 31));
      const __m512i off = _mm512_sub_epi32(k, vlo);
      const __mmask16 in = _mm512_mask_cmple_epu32_mask(m, off, vw);
      // register compress + plain store (the memory form is slow on some cores); cand has n+16 room
      _mm512_storeu_si512(cand + c, _mm512_maskz_compress_epi32(in, off));
      c += __builtin_popcount(in);
    };
    // with lo = 0 the NaN keys (0) are inside: map them; above that they never are
    const bool map_nan = lo == 0;
    auto key = [&](__m512 xv) { return map_nan ? keys<Mag>(xv) : raw_keys<Mag>(xv); };
    const auto& x = row_of(src);
    for (; j + 32 <= n; j += 32) {
      __m512 v0, v1;
      x.block(j, v0, v1);
      step(key(v0), 0xffff, va);
      step(key(v1), 0xffff, vb);
    }
    int64_t pad = 0;  // masked-off lanes of the tail count as "not above"
    for (; j < n; j += 16) {
      const __mmask16 m = tail_mask(n - j);
      pad += 16 - __builtin_popcount(m);
      step(key(x.part(j, m)), m, va);
    }
    const int64_t not_above = _mm512_reduce_add_epi32(_mm512_add_epi32(va, vb)) - pad;
    *above = hi >= 0x7f800000u ? 0 : n - not_above;
    *nc = c;
  }
  template <bool Mag, class Src>
  static void keys(const Src& src, int64_t n, uint32_t* cand) {
    const auto& x = row_of(src);
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 m = tail_mask(n - j);
      _mm512_mask_storeu_epi32(cand + j, m, keys<Mag>(x.part(j, m)));
    }
  }
  template <bool Mag, class Src>
  static int64_t nth_equal(const Src& src, int64_t n, uint32_t kth, int64_t r) {
    const auto& x = row_of(src);
    const __m512i vk = _mm512_set1_epi32(int(kth));
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 m = tail_mask(n - j);
      uint32_t eq = _mm512_mask_cmpeq_epi32_mask(m, keys<Mag>(x.part(j, m)), vk);
      const int c = __builtin_popcount(eq);
      if (c < r) { r -= c; continue; }
      for (; r > 1; --r) eq &= eq - 1;  // drop the lowest r - 1 set bits
      return j + __builtin_ctz(eq);
    }
    return n;  // not reached: there are at least r ties
  }
  template <bool Mag>
  static void apply(const float* x, float* v, int64_t n, uint32_t kth, int64_t last_tie, double* acc) {
    const __m512i vk = _mm512_set1_epi32(int(kth));
    __m512d a0 = _mm512_loadu_pd(acc), a1 = _mm512_setzero_pd(), a2 = a1, a3 = a1;
    auto sq = [](__m512 e, __mmask16 keep, __m512d& s0, __m512d& s1) {
      const __m512d e0 = _mm512_cvtps_pd(_mm512_castps512_ps256(e));
      const __m512d e1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
      s0 = _mm512_mask3_fmadd_pd(e0, e0, s0, __mmask8(keep));
      s1 = _mm512_mask3_fmadd_pd(e1, e1, s1, __mmask8(keep >> 8));
    };
    int64_t j = 0;
    if (last_tie >= n && kth > 0) {  // (kth 0 with k < n always has ties left out)
      // every key equal to kth is kept: kth <= k <= +inf, i.e. (k - kth) or (inf - k) is not
      // negative; drop is all ones where not, and no mask register is needed
      const __m512i vinf = _mm512_set1_epi32(0x7f800000);
      __m512d b0 = _mm512_setzero_pd(), b1 = b0, b2 = b0, b3 = b0;
      auto one = [&](int64_t o, __m512d& s0, __m512d& s1) {
        const __m512 xv = _mm512_loadu_ps(x + o);
        const __m512i k = raw_keys<Mag>(xv);
        const __m512i drop = _mm512_srai_epi32(_mm512_or_si512(_mm512_sub_epi32(k, vk), _mm512_sub_epi32(vinf, k)), 31);
        const __m512 e = _mm512_castsi512_ps(_mm512_andnot_si512(drop, _mm512_castps_si512(xv)));
        if (Mag) _mm512_storeu_ps(v + o, e);
        else _mm512_storeu_ps(v + o, _mm512_castsi512_ps(_mm512_andnot_si512(drop, _mm512_castps_si512(_mm512_loadu_ps(v + o)))));
        const __m512d e0 = _mm512_cvtps_pd(_mm512_castps512_ps256(e));
        const __m512d e1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1));
        s0 = _mm512_fmadd_pd(e0, e0, s0);
        s1 = _mm512_fmadd_pd(e1, e1, s1);
      };
      for (; j + 32 <= n; j += 32) {
        one(j, b0, b1);
        one(j + 16, b2, b3);
      }
      a0 = _mm512_add_pd(a0, _mm512_add_pd(_mm512_add_pd(b0, b1), _mm512_add_pd(b2, b3)));
    }
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i vlast = _mm512_set1_epi32(int(last_tie > 0x7fffffff ? 0x7fffffff : last_tie));
    for (; j < n; j += 16) {
      const __mmask16 m = tail_mask(n - j);
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + j);
      const __m512i k = keys<Mag>(xv);
      const __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(int(j)));
      const __mmask16 keep = (_mm512_cmpgt_epu32_mask(k, vk) | (_mm512_cmpeq_epi32_mask(k, vk) & _mm512_cmple_epi32_mask(idx, vlast))) & m;
      _mm512_mask_storeu_ps(v + j, m & _knot_mask16(keep), _mm512_setzero_ps());
      sq(xv, keep, a0, a1);
    }
    _mm512_storeu_pd(acc, _mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
  }
};

// Rows past 2^30 columns (the tie pass compares 32-bit column indices) take the reference passes.
double trim_avx512(const float* e, float* v, int64_t n, int64_t k, uint32_t* cand, uint32_t* hist) {
  if (n > (int64_t(1) << 30)) return trim_topk_with<Avx512TrimPasses>(e, v, n, k, cand, hist);
  return trim_fast<Avx512FastPasses, false>(e, v, n, k, cand);
}
double trim_mag_avx512(float* v, int64_t n, int64_t k, uint32_t* cand, uint32_t* hist, float* e, TrimHint* hint) {
  if (n > (int64_t(1) << 30)) {
    for (int64_t j = 0; j < n; ++j) e[j] = __builtin_fabsf(v[j]);
    return trim_topk_with<Avx512TrimPasses>(e, v, n, k, cand, hist);
  }
  return trim_fast<Avx512FastPasses, true>(v, v, n, k, cand, hint);
}

// ---- The fused row path (kernels.h FusedRowKernels) ------------------------------------------------

// Columns [j, j + 32) of a raw row of dtype D as two f32 vectors (exact). EO (bf16 only): v0 holds the
// even columns j, j + 2, ..., v1 the odd ones: the 64 loaded bytes shifted and masked, no cross-lane
// shuffle. Otherwise v0 = columns j..j+15, v1 = j+16..j+31.
template <DType D, bool EO>
inline void load32(const void* p, int64_t j, __m512& v0, __m512& v1) {
  if (D == DType::F32) {
    const float* f = static_cast<const float*>(p) + j;
    v0 = _mm512_loadu_ps(f);
    v1 = _mm512_loadu_ps(f + 16);
    return;
  }
  const uint16_t* h = static_cast<const uint16_t*>(p) + j;
  if (D == DType::F16) {
    v0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h)));
    v1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + 16)));
  } else if (EO) {
    const __m512i x = _mm512_loadu_si512(h);
    v0 = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
    v1 = _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32(int(0xffff0000u))));
  } else {
    const __m512i x = _mm512_loadu_si512(h);
    v0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(x)), 16));
    v1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(x, 1)), 16));
  }
}
// The columns of the lanes of load32's v0 / v1.
template <bool EO>
inline __m512i cols0(int64_t j) {
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  return _mm512_add_epi32(EO ? _mm512_add_epi32(iota, iota) : iota, _mm512_set1_epi32(int(j)));
}
template <bool EO>
inline __m512i cols1(int64_t j) {
  return _mm512_add_epi32(cols0<EO>(j), _mm512_set1_epi32(EO ? 1 : 16));
}

// dot += a*b, na += a*a, nb += b*b over 16 lanes, in f64 (s[0..6)).
inline void acc_stats(__m512 a, __m512 b, __m512d* s) {
  const __m512d a0 = _mm512_cvtps_pd(_mm512_castps512_ps256(a)), a1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1));
  const __m512d b0 = _mm512_cvtps_pd(_mm512_castps512_ps256(b)), b1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(b, 1));
  s[0] = _mm512_fmadd_pd(a0, b0, s[0]);
  s[1] = _mm512_fmadd_pd(a1, b1, s[1]);
  s[2] = _mm512_fmadd_pd(a0, a0, s[2]);
  s[3] = _mm512_fmadd_pd(a1, a1, s[3]);
  s[4] = _mm512_fmadd_pd(b0, b0, s[4]);
  s[5] = _mm512_fmadd_pd(b1, b1, s[5]);
}

// The fused stats pass of one row as a loop that can be resumed: step() takes the next 32-column block,
// finish() the blocks left, the last columns and the sums. fused_stats_t runs it alone; the previous row's
// fused output runs its steps between its own blocks (kernels.h NextRowStats): the same blocks in the same
// order into the same accumulators, so the same sums bit for bit.
template <DType D, bool EO>
struct StatsPass {
  static constexpr int64_t es = D == DType::F32 ? 4 : 2;
  const char *pb, *po, *pn;
  int64_t n, body, j = 0;
  __m512d s[12];
  StatsPass(const void* base, const void* old_, const void* new_, int64_t n_)
      : pb(static_cast<const char*>(base)), po(static_cast<const char*>(old_)), pn(static_cast<const char*>(new_)), n(n_),
        body(n_ & ~int64_t(31)) {
    for (__m512d& v : s) v = _mm512_setzero_pd();
  }
  inline void step() __attribute__((always_inline)) {
    stats_prefetch(pb, po, pn, j, es);
    __m512 b0, b1, o0, o1, w0, w1;
    load32<D, EO>(pb, j, b0, b1);
    load32<D, EO>(po, j, o0, o1);
    load32<D, EO>(pn, j, w0, w1);
    acc_stats(_mm512_sub_ps(o0, b0), _mm512_sub_ps(w0, b0), s);
    acc_stats(_mm512_sub_ps(o1, b1), _mm512_sub_ps(w1, b1), s + 6);
    j += 32;
  }
  // What the previous row's fused output does at its block of column `at` (NextRowStats). With no row trimmed
  // (TR false): a step, one per block. A row with a top-k (TR) reads its rows in the select first and has more
  // to do per column: computing the next row's sums there too measured slower (its rows and this row's do not
  // fit in L1 together), so its blocks only prefetch the next row into L2, and finish() sums it from there.
  template <bool TR>
  __attribute__((always_inline)) inline void block(int64_t at) {
    if (!TR) {
      step();
      return;
    }
    for (int64_t l = 0; l < 32 * es; l += 64) {
      _mm_prefetch(pb + at * es + l, _MM_HINT_T1);
      _mm_prefetch(po + at * es + l, _MM_HINT_T1);
      _mm_prefetch(pn + at * es + l, _MM_HINT_T1);
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
    for (; j < n; j += 16) {  // lanes past n load as 0 and add 0
      const __mmask16 m = tail_mask(n - j);
      const __m512 vb = load16(D, pb, j, m);
      acc_stats(_mm512_sub_ps(load16(D, po, j, m), vb), _mm512_sub_ps(load16(D, pn, j, m), vb), s);
    }
    *dot = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s[0], s[1]), _mm512_add_pd(s[6], s[7])));
    *na = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s[2], s[3]), _mm512_add_pd(s[8], s[9])));
    *nb = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s[4], s[5]), _mm512_add_pd(s[10], s[11])));
  }
};

template <DType D, bool EO>
void fused_stats_t(const void* base, const void* old_, const void* new_, int64_t n, double* dot, double* na, double* nb) {
  StatsPass<D, EO> st(base, old_, new_, n);
  st.finish(dot, na, nb);
}

inline float load_one(DType d, const void* p, int64_t j) {
  switch (d) {
    case DType::F32: return static_cast<const float*>(p)[j];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[j]);
    default: return bf16_to_f32(static_cast<const uint16_t*>(p)[j]);
  }
}

// v = x - base read from the raw rows: the row source of the fused select (trim_fast.h select_fast).
template <DType D, bool EO>
struct RawDiff {
  const void* base;
  const void* x;
  int64_t next = 0;  // bytes from a row to the next one, whose lines each block prefetches into L2 (0: none)
  inline void block(int64_t j, __m512& v0, __m512& v1) const {
    if (next) {
      constexpr int64_t es = D == DType::F32 ? 4 : 2;
      for (int64_t l = 0; l < 32 * es; l += 64) {
        _mm_prefetch(static_cast<const char*>(base) + next + j * es + l, _MM_HINT_T1);
        _mm_prefetch(static_cast<const char*>(x) + next + j * es + l, _MM_HINT_T1);
      }
    }
    __m512 b0, b1, x0, x1;
    load32<D, EO>(base, j, b0, b1);
    load32<D, EO>(x, j, x0, x1);
    v0 = _mm512_sub_ps(x0, b0);
    v1 = _mm512_sub_ps(x1, b1);
  }
  inline __m512 part(int64_t j, __mmask16 m) const { return _mm512_sub_ps(load16(D, x, j, m), load16(D, base, j, m)); }
};
template <DType D, bool EO>
struct FiniteRow<RawDiff<D, EO>> {
  static constexpr bool value = true;
};
template <DType D, bool EO>
inline float sample_at(const RawDiff<D, EO>& r, int64_t j) { return load_one(D, r.x, j) - load_one(D, r.base, j); }

template <DType D, bool EO>
RowSelection fused_select_t(const void* base, const void* x, int64_t n, int64_t k, uint32_t* cand, TrimHint* hint, bool prefetch_next) {
  const int64_t next = prefetch_next ? n * (D == DType::F32 ? 4 : 2) : 0;
  const FastSelection s = select_fast<Avx512FastPasses, true>(RawDiff<D, EO>{base, x, next}, n, k, cand, hint);
  return {s.kth, s.last_tie};
}

// Which entries of one side a selection keeps, for the fused output (whose rows are finite: process_rows
// sends a row with a non-finite sum to the unfused steps). With every key finite the tie rule "key > kth,
// or key == kth and column <= last_tie" is a threshold that steps up by one at column last_tie:
// key >= kth up to it, key >= kth + 1 after it; and key >= T is (bits(v) << 1) >= (T << 1) unsigned (the
// shift drops the sign: no |v| needed). lo / hi: those two thresholds, shifted.
struct Keep {
  uint32_t lo = 0, hi = 0;
  int64_t last;  // >= n: every tie kept (the threshold is lo throughout)
  Keep(const RowSelection* s, int64_t n) : last(n) {
    if (!s) return;
    lo = s->kth << 1;
    hi = (s->kth + 1u) << 1;  // kth < +inf: no overflow
    last = s->last_tie;
  }
  // The thresholds of 16 lanes of columns `cols`.
  inline __m512i lanes(__m512i cols) const {
    return _mm512_mask_blend_epi32(_mm512_cmpgt_epi32_mask(cols, _mm512_set1_epi32(int(last < (int64_t(1) << 30) ? last : (int64_t(1) << 30)))),
                                   _mm512_set1_epi32(int(lo)), _mm512_set1_epi32(int(hi)));
  }
};
inline __mmask16 keep_mask(__m512 v, __m512i thr) {
  return _mm512_cmpge_epu32_mask(_mm512_slli_epi32(_mm512_castps_si512(v), 1), thr);
}

// bf16 RNE of v in the high half of each 32-bit lane (the low half is junk), NaN kept quiet.
inline __m512i bf16_hi(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  return _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
}
// The same without the NaN case: for values of finite rows, where a NaN (only the default NaN of an
// invalid operation, e.g. inf - inf after an overflow) still rounds to a bf16 with an all-ones exponent,
// which the caller's non-finite check catches (and the row is then written again by the unfused steps).
inline __m512i bf16_hi_finite(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  return _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
}

// Consecutive 64-byte vectors of a row's output. NT: streaming stores at 64-byte aligned addresses; where
// the row starts s bytes (a multiple of 4) past a line boundary, each line is put together from two
// neighbouring vectors by one permute, and the row's first and last partial lines get masked plain stores.
template <bool NT>
struct RowWriter {
  char* d;
  int64_t count = 0;
  uint32_t s = 0;
  __m512i idx, prev;
  __mmask64 head = 0;
  explicit RowWriter(void* dst) : d(static_cast<char*>(dst)) {
    idx = prev = _mm512_setzero_si512();
    if (!NT) return;
    s = uint32_t(reinterpret_cast<uintptr_t>(dst) & 63);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    idx = _mm512_add_epi32(iota, _mm512_set1_epi32(16 - int(s / 4)));
    head = s ? (~__mmask64(0)) >> s : 0;  // the first 64 - s bytes
  }
  inline void put(__m512i v) {
    if (!NT) _mm512_storeu_si512(d + 64 * count, v);
    else if (s == 0) _mm512_stream_si512(reinterpret_cast<__m512i*>(d + 64 * count), v);
    else if (count == 0) _mm512_mask_storeu_epi8(d, head, v);
    else _mm512_stream_si512(reinterpret_cast<__m512i*>(d - s + 64 * count), _mm512_permutex2var_epi32(prev, idx, v));
    prev = v;
    ++count;
  }
  inline void finish() {
    if (NT && s != 0 && count > 0) _mm512_mask_storeu_epi8(d + 64 * (count - 1), ~head, prev);
  }
};

// The fused output of one row, specialised on what it needs: TA / TB whether side a / b is trimmed
// (at most one is), UA whether co != 0. With co == 0 the old row is not read: x + co*a~ is x for every
// x but -0 (where -0 + (+0) = +0), so only a block holding a -0 reads it, and adds co*a~ to those lanes.
// NX: the next row's stats (nx: its rows, kernels.h NextRowStats), a block of them after each block of this row
// (StatsPass::block), the rest at the end.
template <DType D, bool EO, DType OD, bool NT, bool TA, bool TB, bool UA, bool NX, bool PF>
uint32_t fused_output_t(const void* base, const void* old_, const void* new_, int64_t n, float cn, float co,
                        const RowSelection* sel_a, const RowSelection* sel_b, double* kept_a, double* kept_b, void* dst,
                        NextRowStats* nx) {
  static_assert(!EO || (D == DType::BF16 && OD == DType::BF16), "the even/odd layout is for bf16 rows only");
  static_assert(!(TA && TB) && (UA || !TA), "one trimmed side at most; a trimmed a has co != 0");
  const Keep ka(sel_a, n), kb(sel_b, n);
  const __m512 vcn = _mm512_set1_ps(cn), vco = _mm512_set1_ps(co);
  const __m512i negz = _mm512_set1_epi32(int(0x80000000u));
  __m512i mx = _mm512_setzero_si512(), mx16 = mx;
  // The kept entries of the trimmed side are packed into kbuf (one compress per vector) and their squares
  // summed in f64 a buffer at a time: at density 0.2 a fifth of the conversions and FMAs of summing every
  // lane. The order of the sum depends on the row only (the same for any thread count).
  constexpr int64_t kBuf = 1024;
  alignas(64) float kbuf[kBuf + 48];
  int64_t kc = 0;
  __m512d ks[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
  auto flush = [&]() {
    for (int64_t q = 0; q < kc; q += 16) {
      const __m512 t = _mm512_maskz_loadu_ps(tail_mask(kc - q), kbuf + q);
      const __m512d t0 = _mm512_cvtps_pd(_mm512_castps512_ps256(t)), t1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(t, 1));
      ks[0] = _mm512_fmadd_pd(t0, t0, ks[0]);
      ks[1] = _mm512_fmadd_pd(t1, t1, ks[1]);
    }
    kc = 0;
  };
  // v with the entries the thresholds drop set to +0; the kept ones appended to kbuf
  auto kept = [&](__m512 v, __m512i thr) __attribute__((always_inline)) {
    const __mmask16 km = keep_mask(v, thr);
    v = _mm512_maskz_mov_ps(km, v);
    _mm512_storeu_ps(kbuf + kc, _mm512_maskz_compress_ps(km, v));
    kc += __builtin_popcount(km);
    return v;
  };
  // x = base + cn*b~ (+ co*a~ with UA) for 16 lanes; thr_a / thr_b: the lanes' thresholds (Keep)
  auto value = [&](__m512 pb, __m512 a, __m512 b, __m512i thr_a, __m512i thr_b) __attribute__((always_inline)) {
    if (TB) b = kept(b, thr_b);
    __m512 v = _mm512_add_ps(pb, _mm512_mul_ps(vcn, b));
    if (UA) {
      if (TA) a = kept(a, thr_a);
      v = _mm512_add_ps(v, _mm512_mul_ps(vco, a));
    }
    return v;
  };
  RowWriter<NT> w(dst);
  StatsPass<D, D == DType::BF16> next(NX ? nx->base : base, NX ? nx->old_ : old_, NX ? nx->new_ : new_, n);
  const int64_t body = n & ~int64_t(31);
  // Blocks [j0, j1) of 32 columns with the given thresholds of the v0 / v1 lanes (load32's layout).
  auto blocks = [&](int64_t j0, int64_t j1, __m512i ta0, __m512i ta1, __m512i tb0, __m512i tb1) __attribute__((always_inline)) {
    for (int64_t j = j0; j < j1; j += 32) {
      __m512 b0, b1, o0, o1, n0, n1;
      load32<D, EO>(base, j, b0, b1);
      load32<D, EO>(new_, j, n0, n1);
      if (UA) load32<D, EO>(old_, j, o0, o1);
      else o0 = o1 = b0;  // unused
      __m512 r0 = value(b0, _mm512_sub_ps(o0, b0), _mm512_sub_ps(n0, b0), ta0, tb0);
      __m512 r1 = value(b1, _mm512_sub_ps(o1, b1), _mm512_sub_ps(n1, b1), ta1, tb1);
      if (!UA) {
        const __mmask16 z0 = _mm512_cmpeq_epi32_mask(_mm512_castps_si512(r0), negz), z1 = _mm512_cmpeq_epi32_mask(_mm512_castps_si512(r1), negz);
        if (__builtin_expect(!_kortestz_mask16_u8(z0, z1), 0)) {  // -0 + co*a: a is never trimmed here
          load32<D, EO>(old_, j, o0, o1);
          r0 = _mm512_mask_add_ps(r0, z0, r0, _mm512_mul_ps(vco, _mm512_sub_ps(o0, b0)));
          r1 = _mm512_mask_add_ps(r1, z1, r1, _mm512_mul_ps(vco, _mm512_sub_ps(o1, b1)));
        }
      }
      if (OD == DType::F32) {
        mx = max_abs16(max_abs16(mx, r0), r1);
        w.put(_mm512_castps_si512(r0));
        w.put(_mm512_castps_si512(r1));
      } else if (OD == DType::F16) {
        mx = max_abs16(max_abs16(mx, r0), r1);
        w.put(_mm512_inserti64x4(_mm512_castsi256_si512(to_f16(r0)), to_f16(r1), 1));
      } else {
        __m512i p;
        if (EO) {
          // even columns from r0's lanes, odd ones from r1's: the high halves interleaved in place
          p = _mm512_mask_blend_epi16(__mmask32(0xAAAAAAAAu), _mm512_srli_epi32(bf16_hi_finite(r0), 16), bf16_hi_finite(r1));
        } else {
          const __m512i odd = _mm512_setr_epi32(0x30001, 0x70005, 0xB0009, 0xF000D, 0x130011, 0x170015, 0x1B0019, 0x1F001D,
                                                0x230021, 0x270025, 0x2B0029, 0x2F002D, 0x330031, 0x370035, 0x3B0039, 0x3F003D);
          p = _mm512_permutex2var_epi16(bf16_hi_finite(r0), odd, bf16_hi_finite(r1));  // the high halves, in order
        }
        mx16 = _mm512_max_epu16(mx16, _mm512_slli_epi16(p, 1));  // an all-ones exponent: >= 0xff00
        w.put(p);
      }
      if ((TA || TB) && kc > kBuf) flush();
      if (NX) next.template block<TA || TB || PF>(j);  // as many blocks as this row's
    }
  };
  const __m512i lo_a = _mm512_set1_epi32(int(ka.lo)), hi_a = _mm512_set1_epi32(int(ka.hi));
  const __m512i lo_b = _mm512_set1_epi32(int(kb.lo)), hi_b = _mm512_set1_epi32(int(kb.hi));
  const int64_t last = TA ? ka.last : TB ? kb.last : n;
  if (last >= body) {
    blocks(0, body, lo_a, lo_a, lo_b, lo_b);
  } else {
    const int64_t jb = last & ~int64_t(31);  // the block holding the last kept tie
    blocks(0, jb, lo_a, lo_a, lo_b, lo_b);
    blocks(jb, jb + 32, ka.lanes(cols0<EO>(jb)), ka.lanes(cols1<EO>(jb)), kb.lanes(cols0<EO>(jb)), kb.lanes(cols1<EO>(jb)));
    blocks(jb + 32, body, hi_a, hi_a, hi_b, hi_b);
  }
  w.finish();
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t j = body; j < n; j += 16) {  // the last columns, 16 at a time in order (lanes past n are 0: they add nothing)
    const __mmask16 m = tail_mask(n - j);
    const __m512i cols = _mm512_add_epi32(iota, _mm512_set1_epi32(int(j)));
    const __m512 pb = load16(D, base, j, m);
    // the exact expression (with co*a~ whatever co): a few columns, no -0 case to mind
    __m512 b = _mm512_sub_ps(load16(D, new_, j, m), pb), a = _mm512_sub_ps(load16(D, old_, j, m), pb);
    if (TB) b = kept(b, kb.lanes(cols));
    if (TA) a = kept(a, ka.lanes(cols));
    const __m512 r = _mm512_add_ps(_mm512_add_ps(pb, _mm512_mul_ps(vcn, b)), _mm512_mul_ps(vco, a));
    mx = _mm512_mask_mov_epi32(mx, m, max_abs16(mx, r));
    if (OD == DType::F32) _mm512_mask_storeu_ps(static_cast<float*>(dst) + j, m, r);
    else _mm256_mask_storeu_epi16(static_cast<uint16_t*>(dst) + j, m, OD == DType::F16 ? to_f16(r) : to_bf16(r));
    if (kc > kBuf) flush();
  }
  flush();
  if (NX) next.finish(&nx->dot, &nx->na, &nx->nb);
  if (TA) *kept_a = _mm512_reduce_add_pd(_mm512_add_pd(ks[0], ks[1]));
  if (TB) *kept_b = _mm512_reduce_add_pd(_mm512_add_pd(ks[0], ks[1]));
  if (OD == DType::BF16 && _mm512_cmpge_epu16_mask(mx16, _mm512_set1_epi16(short(0xff00)))) return 0x7f800000u;
  return _mm512_reduce_max_epu32(mx);
}

#include "fused_dispatch.h"

}  // namespace

const Kernels kAvx512Kernels = {"avx512", decode_avx512, output_avx512, encode_avx512, trim_avx512, output_nt_avx512, stats_raw_avx512, trim_mag_avx512, &kFused};

}  // namespace geoedit
