// Per-pass timing of the fused row kernels (native/core/kernels.h FusedRowKernels), single thread, n = 4096,
// without Node: what each pass of a row costs in ns per element, on one row kept in L1 (rows = 1) or streamed
// from memory (rows = 16384). Not a target check (`npm run bench` is); the tool behind docs/performance.md's
// "row pipeline on Zen 4" figures. After `npm run build` (which leaves build/libgeoedit_core.a):
//   g++ -O2 -std=c++17 bench/native/rowpass.cc build/libgeoedit_core.a -Inative -Inative/include -lpthread -ldl -o /tmp/rowpass
//   /tmp/rowpass ROWS DTYPE MODE    DTYPE: 0 f32, 2 bf16
// MODE: 0 stats pass; 1 output pass (no trim, co = 0); 2 output pass summing the next row in it (the 'sums'
// pipeline); 7 the same in the prefetch form (the next row prefetched, summed at the end); 3 stats then output, streaming stores; 4 the same with plain stores; 5 the top-k select alone
// (density 0.2, no hint); 6 a trimmed row's whole work: stats, select (with the previous row's hint), output.
// The AVX-512 kernels (kAvx512Kernels): run it on a CPU that has them.
#include "core/kernels.h"
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <cstring>
#include <cmath>
namespace geoedit { extern const Kernels kAvx512Kernels; }
using namespace geoedit;
int main(int argc, char** argv) {
  if (argc < 4) { std::fprintf(stderr, "usage: rowpass ROWS DTYPE(0 f32, 2 bf16) MODE(0-7)\n"); return 2; }
  const int64_t n = 4096;
  const int64_t rows = atoi(argv[1]);  // rows in the working set
  const int dt = atoi(argv[2]);        // 0 f32, 2 bf16
  const int mode = atoi(argv[3]);      // 0 stats, 1 output(no next), 2 output(next)
  DType d = dt == 0 ? DType::F32 : DType::BF16;
  size_t es = dt == 0 ? 4 : 2;
  std::vector<char> b(rows * n * es + 4096), o(rows * n * es + 4096), w(rows * n * es + 4096), out(rows * n * es + 4096);
  srand(1);
  for (size_t i = 0; i < b.size() / 2; ++i) { float f = (rand() / (float)RAND_MAX - 0.5f);
    if (dt) { uint32_t u; memcpy(&u, &f, 4); ((uint16_t*)b.data())[i] = u >> 16; f *= 1.1f; memcpy(&u,&f,4); ((uint16_t*)o.data())[i] = u>>16; f*=1.1f; memcpy(&u,&f,4); ((uint16_t*)w.data())[i]=u>>16; }
    else if (i < b.size()/4) { ((float*)b.data())[i]=f; ((float*)o.data())[i]=f*1.1f; ((float*)w.data())[i]=f*1.2f; } }
  const FusedRowKernels* F = kAvx512Kernels.fused;
  const int64_t total = 16384;
  double sum = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int rep = 0; rep < 5; ++rep)
  for (int64_t r = 0; r < total; ++r) {
    int64_t i = r % rows;
    const char* rb = b.data() + i * n * es; const char* ro = o.data() + i * n * es; const char* rn = w.data() + i * n * es;
    double dot, na, nb;
    if (mode == 0) { F->stats(d, rb, ro, rn, n, &dot, &na, &nb); sum += dot; }
    else if (mode == 5 || mode == 6) {
      static std::vector<uint32_t> cand(n + 64); static TrimHint h;
      if (mode == 6) F->stats(d, rb, ro, rn, n, &dot, &na, &nb); else nb = 1;
      h.rms = float(std::sqrt(nb / double(n))); if (mode == 5) h.rms = 0.0f;
      RowSelection sel = F->select(d, rb, rn, n, n / 5, cand.data(), mode == 6 ? &h : nullptr, i + 1 < rows);
      sum += sel.kth;
      if (mode == 6) { double ka, kb; F->output(d, rb, ro, rn, n, 0.7f, 0.0f, nullptr, &sel, &ka, &kb, d, out.data() + i * n * es, rows > 64, nullptr); sum += kb; }
    }
    else if (mode == 3 || mode == 4) { F->stats(d, rb, ro, rn, n, &dot, &na, &nb); sum += dot; double ka, kb;
      F->output(d, rb, ro, rn, n, 0.7f, 0.0f, nullptr, nullptr, &ka, &kb, d, out.data() + i * n * es, mode == 3, nullptr); }
    else {
      NextRowStats nx{rb + n * es, ro + n * es, rn + n * es};
      nx.sums = mode != 7;
      bool has = (mode == 2 || mode == 7) && i + 1 < rows;
      double ka, kb;
      F->output(d, rb, ro, rn, n, 0.7f, 0.0f, nullptr, nullptr, &ka, &kb, d, out.data() + i * n * es, rows > 64, has ? &nx : nullptr);
      sum += nx.dot;
    }
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("rows %ld dt %d mode %d: %.2f ns/elem  (%.2f GB/s input)  %g\n", rows, dt, mode, s * 1e9 / (5.0 * total * n), 5.0 * total * n * es * 3 / s / 1e9, sum);
}
