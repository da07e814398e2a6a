// Plain C++ tests of the core, built without any Node header (cmake -DGEOEDIT_BUILD_TESTS=ON).
// Every SIMD level the CPU has is held to the scalar reference; thread counts give equal bytes.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "geoedit/geoedit.h"

using namespace geoedit;

#include "check.h"

struct Data {
  int64_t rows, cols;
  std::vector<float> base, old_, new_;
};

static Data make(int64_t rows, int64_t cols, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  Data d{rows, cols, {}, {}, {}};
  d.base.resize(size_t(rows * cols));
  d.old_.resize(d.base.size());
  d.new_.resize(d.base.size());
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const size_t k = size_t(i * cols + j);
      const float a = 0.1f * nd(g), noise = 0.1f * nd(g);
      d.base[k] = nd(g);
      d.old_[k] = d.base[k] + a;
      const int kind = int(i % 3);
      d.new_[k] = d.base[k] + (kind == 0 ? 0.8f * a + 0.3f * noise : kind == 1 ? -0.8f * a + 0.3f * noise : noise);
    }
  return d;
}

struct Out {
  std::vector<uint16_t> out16;
  std::vector<float> out32;
  std::vector<double> cos;
  std::vector<uint8_t> region;
};

static Out run(const Data& d, const Params& p, DType out_dtype, int simd, int threads) {
  Out o;
  EditJob job;
  job.rows = d.rows;
  job.cols = d.cols;
  job.base = {DType::F32, d.base.data()};
  job.old_ = {DType::F32, d.old_.data()};
  job.new_ = {DType::F32, d.new_.data()};
  job.out_dtype = out_dtype;
  if (out_dtype == DType::F32) { o.out32.resize(d.base.size()); job.out = o.out32.data(); }
  else { o.out16.resize(d.base.size()); job.out = o.out16.data(); }
  o.cos.resize(size_t(d.rows));
  o.region.resize(size_t(d.rows));
  job.cos = o.cos.data();
  job.region = o.region.data();
  RunOptions ro;
  ro.simd = simd;
  ro.threads = threads;
  run_edit(job, p, ro);
  return o;
}

int main() {
  const int levels[3] = {0, 1, 2};
  for (int64_t cols : {1, 5, 16, 17, 63, 300, 4100}) {
    const Data d = make(37, cols, unsigned(cols));
    for (double density : {1.0, 0.3}) {
      Params p;
      p.density = density;
      p.fuse_aligned = 0.7;
      p.forget_conflicting = 0.4;
      for (DType od : {DType::F32, DType::BF16, DType::F16}) {
        const Out ref = run(d, p, od, 0, 1);
        for (int lv : levels) {
          if (!cpu_supports(SimdLevel(lv))) continue;
          const Out a = run(d, p, od, lv, 1), b = run(d, p, od, lv, 0);
          CHECK(a.out32 == b.out32 && a.out16 == b.out16, "threads change bytes (cols %lld, %s)", (long long)cols, simd_name(SimdLevel(lv)));
          for (int64_t i = 0; i < d.rows; ++i)
            CHECK(std::fabs(a.cos[size_t(i)] - ref.cos[size_t(i)]) < 1e-9, "cos row %lld", (long long)i);
          for (size_t k = 0; k < a.out32.size(); ++k)
            CHECK(std::fabs(a.out32[k] - ref.out32[k]) <= 1e-6f * (std::fabs(ref.out32[k]) + 1.f), "f32 out %zu", k);
          for (size_t k = 0; k < a.out16.size(); ++k) {
            auto ord = [](uint16_t v) { return (v & 0x8000) ? -int(v & 0x7fff) : int(v); };
            CHECK(std::abs(ord(a.out16[k]) - ord(ref.out16[k])) <= 1, "16-bit out %zu", k);
          }
        }
      }
    }
  }
  // Top-k ties: |a| equal everywhere, density 0.3 of 10 keeps columns 0..2.
  {
    Data d{1, 10, std::vector<float>(10, 0.f), std::vector<float>(10, 1.f), std::vector<float>(10, 2.f)};
    Params p;
    p.strategy = Strategy::ForgetThenLearn;
    p.density = 0.3;
    for (int lv : levels) {
      if (!cpu_supports(SimdLevel(lv))) continue;
      const Out o = run(d, p, DType::F32, lv, 1);
      for (int j = 0; j < 10; ++j) CHECK(o.out32[size_t(j)] == (j < 3 ? 1.f : 0.f), "tie rule col %d (%s)", j, simd_name(SimdLevel(lv)));
    }
  }
  // Non-finite input: an Error with its code, naming the row.
  {
    Data d = make(4, 8, 1);
    d.new_[2 * 8 + 5] = NAN;
    bool thrown = false;
    try {
      run(d, Params(), DType::F32, -1, 0);
    } catch (const Error& e) {
      thrown = e.code() == ErrorCode::NonFinite && std::strstr(e.what(), "row 2") != nullptr;
    }
    CHECK(thrown, "NaN input must throw NonFinite naming row 2");
  }
  std::printf("core_test: %d checks, %d passed, %d failed\n", checks, checks - failures, failures);
  return failures == 0 ? 0 : 1;
}
