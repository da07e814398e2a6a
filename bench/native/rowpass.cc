// Per-pass timing of the fused row kernels (native/core/kernels.h FusedRowKernels), one thread, n = 4096,
// without Node: what each pass of a row costs in ns per element, on one row kept in L1 (ROWS 1) or streamed
// from memory (ROWS 16384). Not a target check (`npm run bench` is); the tool behind docs/performance.md's
// "row pipeline on Zen 4" figures. After `npm run build` (which leaves build/libgeoedit_core.a):
//   g++ -O2 -std=c++17 bench/native/rowpass.cc build/libgeoedit_core.a -Inative -Inative/include -lpthread -ldl -o /tmp/rowpass
//   /tmp/rowpass ROWS DTYPE MODE     DTYPE: 0 (f32) or 2 (bf16); GEOEDIT_SIMD=avx2 for the AVX2 kernels
// MODE:
//   0 the stats pass
//   1 the output pass (no top-k, co = 0)
//   2 the output pass summing the next row in it (the 'sums' row pipeline)
//   3 stats then output, streaming stores;  4 the same with plain stores
//   5 the top-k select alone (density 0.2, no hint)
//   6 a trimmed row's whole work: stats, select (with the previous row's hint), output
//   7 as 2 in the 'prefetch' form (the next row prefetched during the pass, summed at its end)
// Each row is timed 5 x 16384 / ROWS times; the GB/s figure counts the three input rows.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/kernels.h"

using namespace geoedit;

int main(int argc, char** argv) {
  const int64_t rows = argc == 4 ? std::atoll(argv[1]) : 0;
  const int dt = argc == 4 ? std::atoi(argv[2]) : -1;
  const int mode = argc == 4 ? std::atoi(argv[3]) : -1;
  if (rows < 1 || (dt != 0 && dt != 2) || mode < 0 || mode > 7) {
    std::fprintf(stderr, "usage: rowpass ROWS DTYPE MODE  (ROWS >= 1; DTYPE 0 = f32, 2 = bf16; MODE 0-7: see the top of bench/native/rowpass.cc)\n");
    return 2;
  }
  const SimdLevel level = active_simd();
  const Kernels& K = kernels_for(level);
  if (!K.fused) {
    std::fprintf(stderr, "rowpass: the %s kernels have no fused row path (it needs AVX2 or AVX-512)\n", simd_name(level));
    return 2;
  }
  const FusedRowKernels& F = *K.fused;
  const int64_t n = 4096;
  const DType d = dt == 0 ? DType::F32 : DType::BF16;
  const size_t es = dt == 0 ? 4 : 2, bytes = size_t(rows) * n * es + 4096;  // slack past the last row
  std::vector<char> b(bytes), o(bytes), w(bytes), out(bytes);
  // base in [-0.5, 0.5), old = 1.1 base, new = 1.21 base (bf16: truncated)
  std::srand(1);
  for (size_t i = 0; i < bytes / es; ++i) {
    const float f = float(std::rand()) / float(RAND_MAX) - 0.5f, v[3] = {f, f * 1.1f, f * 1.21f};
    char* dst[3] = {b.data(), o.data(), w.data()};
    for (int q = 0; q < 3; ++q) {
      if (dt == 0) {
        std::memcpy(dst[q] + i * 4, &v[q], 4);
      } else {
        uint32_t u;
        std::memcpy(&u, &v[q], 4);
        const uint16_t h = uint16_t(u >> 16);
        std::memcpy(dst[q] + i * 2, &h, 2);
      }
    }
  }
  std::vector<uint32_t> cand(n + 64);
  TrimHint hint;
  const int64_t total = 16384;
  double sum = 0;  // printed, so that nothing is optimised away
  const auto t0 = std::chrono::steady_clock::now();
  for (int rep = 0; rep < 5; ++rep)
    for (int64_t r = 0; r < total; ++r) {
      const int64_t i = r % rows;
      const char *rb = b.data() + i * n * es, *ro = o.data() + i * n * es, *rn = w.data() + i * n * es;
      char* dst = out.data() + i * n * es;
      const bool nt = rows > 64, next_row = i + 1 < rows;
      double dot = 0, na = 0, nb = 0, ka = 0, kb = 0;
      if (mode == 0) {
        F.stats(d, rb, ro, rn, n, &dot, &na, &nb);
        sum += dot;
      } else if (mode == 3 || mode == 4) {
        F.stats(d, rb, ro, rn, n, &dot, &na, &nb);
        sum += dot;
        F.output(d, rb, ro, rn, n, 0.7f, 0.0f, nullptr, nullptr, &ka, &kb, d, dst, mode == 3, nullptr);
      } else if (mode == 5 || mode == 6) {
        if (mode == 6) {
          F.stats(d, rb, ro, rn, n, &dot, &na, &nb);
          hint.rms = float(std::sqrt(nb / double(n)));
        }
        const RowSelection sel = F.select(d, rb, rn, n, n / 5, cand.data(), mode == 6 ? &hint : nullptr, next_row);
        sum += sel.kth;
        if (mode == 6) {
          F.output(d, rb, ro, rn, n, 0.7f, 0.0f, nullptr, &sel, &ka, &kb, d, dst, nt, nullptr);
          sum += kb;
        }
      } else {  // 1, 2, 7
        NextRowStats nx{rb + n * es, ro + n * es, rn + n * es};
        nx.sums = mode != 7;
        const bool with_next = mode != 1 && next_row;
        F.output(d, rb, ro, rn, n, 0.7f, 0.0f, nullptr, nullptr, &ka, &kb, d, dst, nt, with_next ? &nx : nullptr);
        sum += nx.dot;
      }
    }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double elems = 5.0 * double(total) * double(n);
  std::printf("rows %lld dt %d mode %d: %.2f ns/elem  (%.2f GB/s input)  %g  [%s kernels]\n", (long long)rows, dt, mode,
              s * 1e9 / elems, elems * double(es) * 3 / s / 1e9, sum, K.name);
  return 0;
}
