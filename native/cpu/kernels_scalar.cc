// The scalar reference kernels (SPEC §3, §5). Compiled without ISA flags.
#include "../core/kernels.h"
#include "../core/dtype.h"
#include "trim_impl.h"

namespace geoedit {
namespace {

void decode_scalar(DType dtype, const void* src, float* dst, int64_t n) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(dst, src, size_t(n) * 4);
      break;
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t j = 0; j < n; ++j) dst[j] = f16_to_f32(s[j]);
      break;
    }
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t j = 0; j < n; ++j) dst[j] = bf16_to_f32(s[j]);
      break;
    }
  }
}

void encode_scalar(const float* src, DType dtype, void* dst, int64_t n) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(dst, src, size_t(n) * 4);
      break;
    case DType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t j = 0; j < n; ++j) d[j] = f32_to_f16(src[j]);
      break;
    }
    case DType::BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t j = 0; j < n; ++j) d[j] = f32_to_bf16(src[j]);
      break;
    }
  }
}

uint32_t output_scalar(const float* base, const float* a, const float* b, float cn, float co,
                       int64_t n, DType out_dtype, void* dst) {
  uint32_t mx = 0;
  auto val = [&](int64_t j) {
    const float o = base[j] + cn * b[j];
    const float v = o + co * a[j];
    const uint32_t ab = abs_bits(v);
    mx = ab > mx ? ab : mx;
    return v;
  };
  switch (out_dtype) {
    case DType::F32: {
      float* d = static_cast<float*>(dst);
      for (int64_t j = 0; j < n; ++j) d[j] = val(j);
      break;
    }
    case DType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t j = 0; j < n; ++j) d[j] = f32_to_f16(val(j));
      break;
    }
    case DType::BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t j = 0; j < n; ++j) d[j] = f32_to_bf16(val(j));
      break;
    }
  }
  return mx;
}

inline float load_one(DType d, const void* p, int64_t j) {
  switch (d) {
    case DType::F32: return static_cast<const float*>(p)[j];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[j]);
    default: return bf16_to_f32(static_cast<const uint16_t*>(p)[j]);
  }
}

void stats_raw_scalar(DType bd, const void* base, DType od, const void* old_, DType nd, const void* new_,
                      int64_t n, float* base_out, float* a, float* b, double* dot, double* na, double* nb) {
  double d = 0, x = 0, y = 0;
  for (int64_t j = 0; j < n; ++j) {
    const float bj0 = load_one(bd, base, j);
    const float aj = load_one(od, old_, j) - bj0;
    const float bj = load_one(nd, new_, j) - bj0;
    if (base_out) base_out[j] = bj0;
    a[j] = aj;
    b[j] = bj;
    d += double(aj) * double(bj);
    x += double(aj) * double(aj);
    y += double(bj) * double(bj);
  }
  *dot = d;
  *na = x;
  *nb = y;
}

}  // namespace

const Kernels kScalarKernels = {"scalar", decode_scalar, output_scalar, encode_scalar, trim_topk_impl, output_scalar, stats_raw_scalar, trim_mag_impl, nullptr};

}  // namespace geoedit
