// Plain C++ tests of the core, built without any Node header (cmake -DGEOEDIT_BUILD_TESTS=ON).
// Every SIMD level the CPU has is held to the scalar reference; thread counts give equal bytes.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/busguard.h"
#include "core/dtype.h"
#include "core/hash.h"
#include "core/kernels.h"
#include "core/stream.h"
#include "core/writebehind.h"
#include "core/directwrite.h"
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

// Rows of one stored dtype (bf16, f16 or f32 bytes), as the addon hands them to the core.
struct Raw {
  int64_t rows, cols;
  DType dt;
  std::vector<uint8_t> base, old_, new_;  // rows x cols values of dt
};
static void put_value(std::vector<uint8_t>& v, DType dt, size_t k, float x) {
  if (dt == DType::F32) { std::memcpy(&v[4 * k], &x, 4); return; }
  const uint16_t h = dt == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x);
  std::memcpy(&v[2 * k], &h, 2);
}
// kind 0: geoedit-like rows (make); 1: few distinct values (ties everywhere, also at the threshold);
// 2: old == base on most columns (many zero task-vector entries: the k-th key is often 0)
static Raw make_raw(int64_t rows, int64_t cols, DType dt, int kind, unsigned seed) {
  const Data d = make(rows, cols, seed);
  Raw r{rows, cols, dt, {}, {}, {}};
  const size_t es = dt == DType::F32 ? 4 : 2, n = size_t(rows * cols);
  r.base.resize(n * es);
  r.old_.resize(n * es);
  r.new_.resize(n * es);
  std::mt19937 g(seed + 101);
  for (size_t k = 0; k < n; ++k) {
    float b = d.base[k], o = d.old_[k], w = d.new_[k];
    if (kind == 1) {
      b = 0.5f;
      o = 0.5f + 0.125f * float(int(g() % 5) - 2);
      w = 0.5f + 0.125f * float(int(g() % 5) - 2);
    } else if (kind == 2 && g() % 4 != 0) {
      o = b;
    }
    put_value(r.base, dt, k, b);
    put_value(r.old_, dt, k, o);
    put_value(r.new_, dt, k, w);
  }
  return r;
}
struct RawOut {
  std::vector<uint8_t> out;
  std::vector<double> cos, dsq;
  std::vector<uint8_t> region;
  std::vector<float> cn, co;
};
static RawOut run_raw(const Raw& d, const Params& p, DType out_dtype, int simd, int threads, const std::vector<float>* cnew = nullptr,
                      const std::vector<float>* cold = nullptr) {
  RawOut o;
  EditJob job;
  job.rows = d.rows;
  job.cols = d.cols;
  job.base = {d.dt, d.base.data()};
  job.old_ = {d.dt, d.old_.data()};
  job.new_ = {d.dt, d.new_.data()};
  job.out_dtype = out_dtype;
  o.out.resize(size_t(d.rows * d.cols) * dtype_size(out_dtype));
  job.out = o.out.data();
  const size_t R = size_t(d.rows);
  o.cos.resize(R);
  o.dsq.resize(R);
  o.region.resize(R);
  o.cn.resize(R);
  o.co.resize(R);
  job.stats.cos = o.cos.data();
  job.stats.region = o.region.data();
  job.stats.coef_new = o.cn.data();
  job.stats.coef_old = o.co.data();
  job.stats.delta_sq = o.dsq.data();
  if (cnew) { job.c_new = cnew->data(); job.c_old = cold->data(); }
  RunOptions ro;
  ro.simd = simd;
  ro.threads = threads;
  run_edit(job, p, ro);
  return o;
}
// The f32 rows of d through run_raw.
static Out run(const Data& d, const Params& p, DType out_dtype, int simd, int threads) {
  auto bytes = [](const std::vector<float>& v) { return std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), reinterpret_cast<const uint8_t*>(v.data() + v.size())); };
  const Raw r{d.rows, d.cols, DType::F32, bytes(d.base), bytes(d.old_), bytes(d.new_)};
  const RawOut ro = run_raw(r, p, out_dtype, simd, threads);
  Out o;
  if (out_dtype == DType::F32) o.out32.resize(d.base.size());
  else o.out16.resize(d.base.size());
  std::memcpy(out_dtype == DType::F32 ? static_cast<void*>(o.out32.data()) : static_cast<void*>(o.out16.data()), ro.out.data(), ro.out.size());
  o.cos = ro.cos;
  o.region = ro.region;
  return o;
}

// Pages of [off, off + len) of fd in the page cache (mincore over a mapping).
static size_t resident_pages(int fd, off_t off, size_t len) {
  void* m = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, off);
  if (m == MAP_FAILED) return 0;
  const size_t ps = size_t(sysconf(_SC_PAGESIZE)), n = (len + ps - 1) / ps;
  std::vector<unsigned char> v(n);
  size_t r = 0;
  if (mincore(m, len, v.data()) == 0)
    for (unsigned char c : v) r += c & 1;
  munmap(m, len);
  return r;
}

// The stream's read-ahead (stream.cc) asks for the next edit task's first block while this task's
// block runs. Task A fails on a NaN in its only block, so task B's rows (64 MiB further into the
// file, out of reach of the kernel's own read-around) are never read by the stream itself: they
// are in the page cache afterwards only if the read-ahead asked for them — and not without it.
static void test_read_ahead() {
  const char* tmp = std::getenv("TMPDIR");
  std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/geoedit-readahead-XXXXXX";
  const int fd = mkstemp(&path[0]);
  if (fd < 0) { std::printf("read-ahead check skipped: mkstemp failed\n"); return; }
  unlink(path.c_str());
  const off_t b_off = off_t(64) << 20;
  const int64_t b_rows = 64, b_cols = 1024;  // 256 KiB of f32: one block
  std::vector<float> a(16, 0.5f), a_new(16, 0.5f);
  a_new[3] = NAN;
  bool ok = pwrite(fd, a.data(), 64, 0) == 64 && pwrite(fd, a_new.data(), 64, 4096) == 64 &&
            ftruncate(fd, b_off + off_t(b_rows * b_cols * 4)) == 0;
  CHECK(ok, "writing the read-ahead test file");
  StreamTask ta, tb;
  ta.kind = tb.kind = StreamTask::Edit;
  ta.name = "A";
  ta.rows = 1;
  ta.cols = 16;
  ta.base = ta.old_ = {fd, 0, DType::F32, path};
  ta.new_ = {fd, 4096, DType::F32, path};
  tb.name = "B";
  tb.rows = b_rows;
  tb.cols = b_cols;
  tb.base = tb.old_ = tb.new_ = {fd, uint64_t(b_off), DType::F32, path};
  const std::vector<StreamTask> tasks = {ta, tb};
  const size_t b_len = size_t(b_rows * b_cols * 4), b_pages = b_len / size_t(sysconf(_SC_PAGESIZE));
  auto run = [&](const char* env) {
    setenv("GEOEDIT_STREAM_READAHEAD", env, 1);
    bool thrown = false;
    try {
      run_stream(tasks, Params(), RunOptions(), 0, StreamControl());
    } catch (const Error& e) {
      thrown = e.code() == ErrorCode::NonFinite && std::strstr(e.what(), "'A'") != nullptr;
    }
    CHECK(thrown, "task A must fail on its NaN (GEOEDIT_STREAM_READAHEAD=%s)", env);
  };
  // Does this file system act on WILLNEED at all (tmpfs does not: its pages are memory already)?
  const off_t probe = off_t(32) << 20;
  posix_fadvise(fd, probe, 65536, POSIX_FADV_WILLNEED);
  size_t probed = 0;
  for (int i = 0; i < 100 && (probed = resident_pages(fd, probe, 65536)) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (probed == 0) {
    std::printf("read-ahead check skipped: the file system of %s ignores POSIX_FADV_WILLNEED\n", path.c_str());
  } else if (resident_pages(fd, b_off, b_len) != 0) {
    std::printf("read-ahead check skipped: the test file's pages are cached already\n");
  } else {
    run("0");  // off: B is never touched
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(resident_pages(fd, b_off, b_len) == 0, "without read-ahead task B's rows were read");
    run("1");  // on (the CPU path's opt-in; the GPU path has it by default)
    size_t got = 0;
    for (int i = 0; i < 200 && (got = resident_pages(fd, b_off, b_len)) < b_pages; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(got == b_pages, "read-ahead brought %zu of %zu pages of the next task's first block", got, b_pages);
  }
  unsetenv("GEOEDIT_STREAM_READAHEAD");
  close(fd);
}

// SPEC §5: an output that overflows its dtype is Error(NonFiniteOutput) naming tensor, row and
// column, on every SIMD level (plain and streaming-store outputs), unless the caller opts in.
static void test_non_finite_output(const int levels[3]) {
  struct Case {
    const char* what;
    int64_t rows, cols;
    DType out;
    double scale;
    int64_t bad_row, bad_col;  // where the base holds 1e6 (an f16 overflow), or -1
  };
  const Case cases[] = {
      {"f32 1e6 -> f16", 9, 37, DType::F16, 1.0, 5, 29},
      {"f32 -> bf16, scale 1e40", 6, 40, DType::BF16, 1e40, -1, -1},
      {"f32 -> f32, scale 1e40", 6, 21, DType::F32, 1e40, -1, -1},
      {"f32 1e6 -> f16, streaming stores (32 MiB out)", 512, 32768, DType::F16, 1.0, 300, 20000},
  };
  for (const Case& c : cases) {
    Data d = make(c.rows, c.cols, 77);
    Params p;
    p.scale = c.scale;
    if (c.bad_row >= 0) {
      const size_t k = size_t(c.bad_row * c.cols + c.bad_col);
      d.base[k] = 1e6f;
      d.old_[k] = 1e6f + 0.01f;
      d.new_[k] = 1e6f + 0.02f;
    }
    std::string ref;
    int64_t ref_row = -2, ref_col = -2;
    for (int lv : {0, 1, 2}) {
      if (!cpu_supports(SimdLevel(lv)) || levels[lv] != lv) continue;
      std::string msg;
      int64_t row = -1, col = -1;
      try {
        run(d, p, c.out, lv, 0);
      } catch (const Error& e) {
        if (e.code() == ErrorCode::NonFiniteOutput) {
          msg = e.what();
          row = e.details().row;
          col = e.details().column;
        }
      }
      CHECK(!msg.empty(), "%s (%s): expected NonFiniteOutput", c.what, simd_name(SimdLevel(lv)));
      if (c.bad_row >= 0) CHECK(row == c.bad_row && col == c.bad_col, "%s (%s): row %lld column %lld", c.what, simd_name(SimdLevel(lv)), (long long)row, (long long)col);
      if (lv == 0) { ref = msg; ref_row = row; ref_col = col; }
      else CHECK(msg == ref && row == ref_row && col == ref_col, "%s (%s): '%s' vs scalar '%s'", c.what, simd_name(SimdLevel(lv)), msg.c_str(), ref.c_str());
      // Opted in: no error, and the overflow is written as it rounds.
      Params q = p;
      q.allow_non_finite_output = true;
      bool ok = true;
      Out o;
      try {
        o = run(d, q, c.out, lv, 0);
      } catch (const Error&) {
        ok = false;
      }
      bool inf = false;
      for (uint16_t v : o.out16) inf = inf || (v & 0x7fff) >= (c.out == DType::F16 ? 0x7c00 : 0x7f80);
      for (float v : o.out32) inf = inf || !std::isfinite(v);
      CHECK(ok && inf, "%s (%s): allow_non_finite_output writes the non-finite values", c.what, simd_name(SimdLevel(lv)));
    }
  }
  // Just below the f16 limit (65504, and 65519.99 which rounds to it): no error.
  {
    Data d = make(2, 16, 5);
    for (float& v : d.old_) v = 0;
    for (float& v : d.new_) v = 0;
    for (float& v : d.base) v = 0;
    d.base[3] = 65504.f;
    d.base[7] = 65519.99f;
    Params p;
    for (int lv : {0, 1, 2}) {
      if (!cpu_supports(SimdLevel(lv))) continue;
      bool ok = true;
      try { run(d, p, DType::F16, lv, 1); } catch (const Error&) { ok = false; }
      CHECK(ok, "65519.99 rounds to the largest finite f16 (%s)", simd_name(SimdLevel(lv)));
    }
  }
}

// Top-k (SPEC §3.3) of every ISA's trim and trim_mag against a sort: keep the k largest keys, ties
// by the lower column. The kept entries (v's bytes) must be identical; the kept sum of squares
// equal up to the f64 summation order.
static uint32_t ref_key(float e) {
  uint32_t u;
  std::memcpy(&u, &e, 4);
  const uint32_t m = u & 0x7fffffffu;
  return (m > 0x7f800000u || (u >> 31)) ? 0u : m;
}
static void ref_trim(const std::vector<float>& e, std::vector<float>& v, int64_t k, double* sum) {
  const int64_t n = int64_t(e.size());
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) idx[size_t(j)] = j;
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t x, int64_t y) { return ref_key(e[size_t(x)]) > ref_key(e[size_t(y)]); });
  std::vector<char> keep(size_t(n), 0);
  for (int64_t r = 0; r < std::min(k, n); ++r) keep[size_t(idx[size_t(r)])] = 1;
  double s = 0;
  for (int64_t j = 0; j < n; ++j) {
    if (keep[size_t(j)]) s += double(e[size_t(j)]) * double(e[size_t(j)]);
    else v[size_t(j)] = 0.0f;
  }
  *sum = s;
}
static void test_trim_exact() {
  std::mt19937 g(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_int_distribution<int> small(0, 3);
  const int64_t widths[] = {1, 2, 7, 16, 17, 100, 511, 512, 513, 1000, 4096, 4099, 11008, 14336, 65537};
  int cases = 0;
  TrimHint last_hint;
  for (int64_t n : widths)
    for (int dist = 0; dist < 11; ++dist) {
      const int64_t stride = std::max<int64_t>(1, n / 128);
      std::vector<float> v(static_cast<size_t>(n)), e(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) {
        float x = 0.1f * nd(g);
        switch (dist) {
          case 1: x = 0.5f; break;                                         // all ties
          case 2: x = float(small(g)) * (j % 2 ? -1.f : 1.f); break;        // few values, many ties
          case 3: x = j % 5 == 0 ? 0.f : (j % 5 == 1 ? -0.f : x); break;    // zeros and -0
          case 4: x = j < n / 2 ? x * 1e-30f : x * 1e30f; break;            // wide range
          case 5: x = std::ldexp(1.0f + float(j % 3) * 0x1p-23f, int(j % 7)); break;  // adjacent floats
          case 6: x = j % 97 == 3 ? INFINITY : (j % 89 == 5 ? NAN : x); break;  // inf and NaN (allowNonFinite)
          case 7: x = float(j); break;                                      // sorted ascending
          case 8: x = float(n - j); break;                                  // sorted descending
          case 9: x = j % stride == 0 ? 100.f : x; break;                   // the sample sees only the largest
          case 10: x = j % stride == 0 ? 0.f : x; break;                    // ... or only zeros
        }
        v[size_t(j)] = x;
        e[size_t(j)] = dist == 6 || dist == 3 ? x : std::fabs(x) * (dist == 2 && j % 3 == 0 ? -1.f : 1.f);
      }
      for (double dens : {0.001, 0.05, 0.2, 0.5, 0.9, 0.999}) {
        const int64_t k = std::max<int64_t>(1, int64_t(std::ceil(dens * double(n))));
        for (int mag = 0; mag < 2; ++mag) {
          std::vector<float> ev = e;
          if (mag) for (int64_t j = 0; j < n; ++j) ev[size_t(j)] = std::fabs(v[size_t(j)]);
          std::vector<float> want = v;
          double ws = 0;
          ref_trim(ev, want, k, &ws);
          for (int lv = 0; lv < 3; ++lv) {
            if (!cpu_supports(SimdLevel(lv))) continue;
            const Kernels& K = kernels_for(SimdLevel(lv));
            std::vector<float> got = v, scratch(static_cast<size_t>(n));
            std::vector<uint32_t> cand(size_t(n) + 16), hist(2048);
            TrimHint hint;  // a fresh one, then one left by the previous distribution's rows
            if (dist % 2) hint = last_hint;
            hint.rms = float(std::sqrt(std::max(0.0, ws) / double(k)));
            const double gs = mag ? K.trim_mag(got.data(), n, k, cand.data(), hist.data(), scratch.data(), &hint)
                                  : K.trim(ev.data(), got.data(), n, k, cand.data(), hist.data());
            if (mag) last_hint = hint;
            ++cases;
            CHECK(std::memcmp(got.data(), want.data(), size_t(n) * 4) == 0, "trim%s keeps other entries (%s, n %lld, k %lld, dist %d)",
                  mag ? "_mag" : "", K.name, (long long)n, (long long)k, dist);
            CHECK(std::isnan(ws) ? std::isnan(gs) : (ws == gs || std::fabs(gs - ws) <= 1e-12 * std::fabs(ws)),
                  "trim%s sum %.17g vs %.17g (%s, n %lld, k %lld, dist %d)", mag ? "_mag" : "", gs, ws, K.name, (long long)n, (long long)k, dist);
          }
        }
      }
    }
  std::printf("trim: %d cases against the sort\n", cases);
}

// SHA-256 through the platform's OpenSSL (core/hash.h): the FIPS 180 vectors, then hash_files on
// files of awkward sizes (several at once) against one-shot digests, a short file and a cancel.
static void test_sha256() {
  if (!sha256_unavailable_reason().empty()) {
    std::printf("sha256 checks skipped: %s\n", sha256_unavailable_reason().c_str());
    return;
  }
  auto one = [](const std::string& s) { Sha256 h; h.update(s.data(), s.size()); return h.hex(); };
  CHECK(one("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256(abc)");
  CHECK(one("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256('')");
  CHECK(one(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", "sha256(a x 1e6)");
  const char* tmp = std::getenv("TMPDIR");
  const std::string dir = tmp && *tmp ? tmp : "/tmp";
  std::vector<HashFile> files;
  std::vector<std::string> want;
  std::mt19937 g(3);
  for (size_t size : {size_t(0), size_t(1), size_t(1 << 20), size_t((1 << 20) + 7), size_t(5 << 20) + 333}) {
    std::string path = dir + "/geoedit-hash-XXXXXX";
    const int fd = mkstemp(&path[0]);
    CHECK(fd >= 0, "mkstemp for the hash test");
    if (fd < 0) return;
    unlink(path.c_str());
    std::string data(size, '\0');
    for (auto& c : data) c = char(g());
    CHECK(pwrite(fd, data.data(), size, 0) == ssize_t(size), "writing the hash test file");
    files.push_back({fd, uint64_t(size), path});
    want.push_back(one(data));
  }
  for (int threads : {1, 2, 0}) {
    const std::vector<HashResult> got = hash_files(files, threads);
    for (size_t i = 0; i < files.size(); ++i)
      CHECK(got[i].sha256 == want[i], "hash_files file %zu (%llu bytes, %d threads)", i, (unsigned long long)files[i].size, threads);
  }
  // A file shorter than its stated size (it shrank): ERR_IO naming the file.
  std::vector<HashFile> short_one = {files[2]};
  short_one[0].size += 10;
  bool io = false;
  try {
    hash_files(short_one, 1);
  } catch (const Error& e) {
    io = e.code() == ErrorCode::Io && std::strstr(e.what(), files[2].path.c_str()) != nullptr && e.details().file == files[2].path;
  }
  CHECK(io, "a short file fails with Io naming it");
  const double cancel = 1;
  bool aborted = false;
  try {
    hash_files({files[4]}, 1, &cancel);
  } catch (const Error& e) {
    aborted = e.code() == ErrorCode::Aborted;
  }
  CHECK(aborted, "hash_files stops when cancelled");
  for (auto& f : files) close(f.fd);
  std::printf("sha256: %s\n", sha256_provider().c_str());
}

// The fused row path (kernels.h FusedRowKernels: raw rows of one dtype, no decoded scratch rows) of
// every ISA that has one, against the scalar reference's unfused steps: bf16, f16 and f32 inputs, every
// output dtype, widths around the 32-column (AVX-512) and 16-column (AVX2) blocks and odd tails, densities 1 / 0.2 / 0.03, rows full of
// ties, non-finite inputs with allowNonFinite, thread counts. With coefficients that do not depend on
// the f64 sums (every strategy but geoedit's weights) the bytes are identical to the reference; so are
// the kept sums up to their f64 summation order.
static bool close_rel(double x, double y, double tol) {
  if (std::isnan(x) || std::isnan(y)) return std::isnan(x) && std::isnan(y);
  return x == y || std::fabs(x - y) <= tol * std::max(std::fabs(x), std::fabs(y));
}
static void test_fused_rows() {
  int rows_checked[3] = {0, 0, 0};
  const DType dts[] = {DType::BF16, DType::F16, DType::F32};
  const int64_t widths[] = {1, 5, 31, 32, 33, 63, 100, 513, 1000, 4099};
  for (int lv = 1; lv < 3; ++lv) {
#if defined(GEOEDIT_X86)
    // both x86 SIMD levels have a fused row path (AVX2 + FMA + F16C, AVX-512)
    CHECK(!cpu_supports(SimdLevel(lv)) || kernels_for(SimdLevel(lv)).fused, "%s has no fused row path", simd_name(SimdLevel(lv)));
#endif
    if (!cpu_supports(SimdLevel(lv)) || !kernels_for(SimdLevel(lv)).fused) continue;
    for (DType dt : dts)
      for (int64_t cols : widths)
        for (int kind = 0; kind < 3; ++kind) {
          const int64_t R = cols >= 1000 ? 9 : 21;
          const Raw d = make_raw(R, cols, dt, kind, unsigned(cols * 7 + kind));
          std::vector<float> cnew(static_cast<size_t>(R)), cold(static_cast<size_t>(R));
          for (int64_t i = 0; i < R; ++i) {
            cnew[size_t(i)] = i % 4 == 3 ? 0.0f : 0.5f + 0.1f * float(i % 3);
            cold[size_t(i)] = i % 3 == 1 ? 0.0f : -0.25f;
          }
          for (double density : {1.0, 0.2, 0.03})
            for (int strat = 0; strat < 5; ++strat) {
              Params p;
              p.density = density;
              if (strat == 1) p.strategy = Strategy::TaskArithmetic;
              if (strat == 2) p.strategy = Strategy::ForgetThenLearn;
              if (strat == 3) p.strategy = Strategy::Custom;
              if (strat == 4) { p.fuse_aligned = 0.7; p.forget_conflicting = 0.4; }
              for (DType od : dts) {
                const RawOut ref = run_raw(d, p, od, 0, 1, &cnew, &cold);
                const RawOut got = run_raw(d, p, od, lv, 1, &cnew, &cold), many = run_raw(d, p, od, lv, 0, &cnew, &cold);
                CHECK(got.out == many.out && got.dsq == many.dsq, "fused: threads change bytes (%s, %s, cols %lld)", kernels_for(SimdLevel(lv)).name,
                      dtype_name(dt), (long long)cols);
                const size_t es = dtype_size(od), rb = size_t(cols) * es;
                for (int64_t i = 0; i < R; ++i) {
                  ++rows_checked[lv];
                  const size_t r = size_t(i);
                  CHECK(std::fabs(got.cos[r] - ref.cos[r]) < 1e-9, "fused cos row %lld", (long long)i);
                  // geoedit's weights come from the f64 sums: equal coefficients give equal bytes
                  const bool same_coef = got.cn[r] == ref.cn[r] && got.co[r] == ref.co[r];
                  if (strat != 4 && got.region[r] == ref.region[r]) CHECK(same_coef, "fused coefficients row %lld", (long long)i);
                  if (!same_coef) continue;
                  CHECK(std::memcmp(got.out.data() + r * rb, ref.out.data() + r * rb, rb) == 0,
                        "fused bytes differ: %s in %s out %s, cols %lld, kind %d, density %.2f, strategy %d, row %lld", kernels_for(SimdLevel(lv)).name,
                        dtype_name(dt), dtype_name(od), (long long)cols, kind, density, strat, (long long)i);
                  CHECK(close_rel(got.dsq[r], ref.dsq[r], 1e-12), "fused deltaSq %.17g vs %.17g (cols %lld, row %lld)", got.dsq[r], ref.dsq[r],
                        (long long)cols, (long long)i);
                }
              }
            }
        }
  }
  std::printf("fused rows against the scalar reference: avx2 %d, avx512 %d\n", rows_checked[1], rows_checked[2]);
}

// The fused output's special cases against the scalar reference, byte for byte: co == 0 rows (the old row
// is not read) over signed zeros, where -0 + co*a decides the sign (negative cn, -0 coefficients, dropped
// entries of a trimmed side); bf16 outputs that overflow or turn NaN inside the blocks (32 columns on
// AVX-512, 16 on AVX2; the
// kernel's RNE has no NaN lane fix: such a row is written by the unfused steps), named as the reference
// names them or, opted in, written with the reference's bytes.
static void test_fused_edges() {
  const DType dts[] = {DType::BF16, DType::F16, DType::F32};
  for (int lv = 1; lv < 3; ++lv) {
    if (!cpu_supports(SimdLevel(lv)) || !kernels_for(SimdLevel(lv)).fused) continue;
    for (DType dt : dts)
      for (int64_t cols : {64, 100, 4099}) {
        const int64_t R = 12;
        Raw d = make_raw(R, cols, dt, 0, unsigned(cols + 3));
        std::mt19937 g{unsigned(cols)};
        for (size_t k = 0; k < size_t(R * cols); ++k) {
          const unsigned u = g() % 6;
          if (u < 2) put_value(d.base, dt, k, u ? -0.0f : 0.0f);
          if (u == 0 || u == 3) put_value(d.new_, dt, k, g() % 2 ? -0.0f : 0.0f);
          if (u == 1 && g() % 2) put_value(d.new_, dt, k, -0.0f);
        }
        std::vector<float> cnew(static_cast<size_t>(R)), cold(static_cast<size_t>(R));
        for (int64_t i = 0; i < R; ++i) {
          cnew[size_t(i)] = i % 3 == 0 ? -0.75f : (i % 3 == 1 ? 0.5f : -0.0f);
          cold[size_t(i)] = i % 4 == 0 ? -0.0f : (i % 4 == 1 ? 0.0f : (i % 4 == 2 ? -0.5f : 0.25f));
        }
        for (double density : {1.0, 0.2}) {
          Params p;
          p.density = density;
          p.strategy = Strategy::Custom;
          for (DType od : dts) {
            const RawOut ref = run_raw(d, p, od, 0, 1, &cnew, &cold), got = run_raw(d, p, od, lv, 1, &cnew, &cold);
            CHECK(got.out == ref.out, "fused signed zeros: %s in %s out %s, cols %lld, density %.1f", kernels_for(SimdLevel(lv)).name,
                  dtype_name(dt), dtype_name(od), (long long)cols, density);
          }
        }
      }
    // Overflow to inf (row 1, column 70) and NaN (inf - inf: row 3, column 40) in bf16 outputs, in the blocks.
    for (DType dt : {DType::BF16, DType::F32}) {
      Raw d = make_raw(5, 200, dt, 0, 21);
      put_value(d.new_, dt, 1 * 200 + 70, 3.0e38f);
      put_value(d.base, dt, 3 * 200 + 40, 0.0f);
      put_value(d.old_, dt, 3 * 200 + 40, 3.0e38f);
      put_value(d.new_, dt, 3 * 200 + 40, 3.0e38f);
      std::vector<float> cnew(5, 1.5f), cold(5, 0.0f);
      cold[3] = -1.5f;
      for (double density : {1.0, 0.2}) {
        Params p;
        p.density = density;
        p.strategy = Strategy::Custom;
        std::string ref;
        int64_t ref_row = -1, ref_col = -1;
        for (int l : {0, lv}) {
          std::string msg;
          int64_t row = -1, col = -1;
          try {
            run_raw(d, p, DType::BF16, l, 1, &cnew, &cold);
          } catch (const Error& e) {
            if (e.code() == ErrorCode::NonFiniteOutput) { msg = e.what(); row = e.details().row; col = e.details().column; }
          }
          if (l == 0) { ref = msg; ref_row = row; ref_col = col; }
          else CHECK(!msg.empty() && msg == ref && row == ref_row && col == ref_col, "fused bf16 overflow (%s, %s in, density %.1f): '%s' vs '%s'",
                     kernels_for(SimdLevel(lv)).name, dtype_name(dt), density, msg.c_str(), ref.c_str());
        }
        p.allow_non_finite_output = true;
        const RawOut want = run_raw(d, p, DType::BF16, 0, 1, &cnew, &cold), got = run_raw(d, p, DType::BF16, lv, 1, &cnew, &cold);
        uint16_t nanv = 0, infv = 0;
        std::memcpy(&nanv, &want.out[2 * (3 * 200 + 40)], 2);
        std::memcpy(&infv, &want.out[2 * (1 * 200 + 70)], 2);
        CHECK((nanv & 0x7fff) > 0x7f80 && infv == 0x7f80, "the reference writes NaN and inf here (%04x, %04x)", nanv, infv);
        CHECK(got.out == want.out, "fused bf16 non-finite output bytes (%s, %s in, density %.1f)", kernels_for(SimdLevel(lv)).name, dtype_name(dt),
              density);
      }
    }
  }
}

// The fused output kernel's streaming stores: every misalignment of the row (4-byte steps, and 2 bytes:
// plain stores), every output dtype, against its plain stores; bytes around the row untouched.
static void test_fused_stream_stores() {
  for (int lv = 1; lv < 3; ++lv) {
    if (!cpu_supports(SimdLevel(lv)) || !kernels_for(SimdLevel(lv)).fused) continue;
    const FusedRowKernels& F = *kernels_for(SimdLevel(lv)).fused;
    for (DType dt : {DType::BF16, DType::F16, DType::F32})
      for (int64_t n : {16, 32, 33, 64, 100, 4096, 4099}) {
        const Raw d = make_raw(1, n, dt, 0, unsigned(n));
        const RowSelection sel{0x3d000000u, n / 3};
        for (DType od : {DType::BF16, DType::F16, DType::F32}) {
          const size_t bytes = size_t(n) * dtype_size(od);
          std::vector<uint8_t> want(bytes + 256, 0xA5), got(bytes + 256, 0xA5);
          uint8_t* w0 = want.data() + (64 - (reinterpret_cast<uintptr_t>(want.data()) & 63));
          double ka = 0, kb = 0, ka2 = 0, kb2 = 0;
          const uint32_t m0 = F.output(dt, d.base.data(), d.old_.data(), d.new_.data(), n, 0.75f, -0.5f, &sel, nullptr, &ka, &kb, od, w0, false, nullptr);
          const std::vector<uint8_t> ref(w0, w0 + bytes);
          for (int off = 0; off < 64; off += (off < 4 ? 2 : 4)) {
            std::fill(got.begin(), got.end(), 0xA5);
            uint8_t* g0 = got.data() + (64 - (reinterpret_cast<uintptr_t>(got.data()) & 63)) + off;
            const uint32_t m1 = F.output(dt, d.base.data(), d.old_.data(), d.new_.data(), n, 0.75f, -0.5f, &sel, nullptr, &ka2, &kb2, od, g0, true, nullptr);
            std::atomic_thread_fence(std::memory_order_seq_cst);
            bool around = true;
            for (uint8_t* q = got.data(); q < g0; ++q) around = around && *q == 0xA5;
            for (uint8_t* q = g0 + bytes; q < got.data() + got.size(); ++q) around = around && *q == 0xA5;
            CHECK(std::memcmp(g0, ref.data(), bytes) == 0 && around && m0 == m1 && ka == ka2,
                  "fused streaming stores (%s, in %s out %s, n %lld, offset %d)", kernels_for(SimdLevel(lv)).name, dtype_name(dt), dtype_name(od),
                  (long long)n, off);
          }
        }
      }
  }
}

// The fused output with the next row's stats in the same pass (kernels.h NextRowStats, process_rows' row
// pipeline): the same output bytes, return value and kept sums as without, and the next row's sums bit for bit
// those of the stats kernel, for untrimmed rows (a stats step per block) and trimmed ones (an L2 prefetch per
// block, the sums at the end), co == 0 and not, every dtype and width around the blocks, streaming stores or
// not; next rows with signed zeros, NaN and inf (its sums are whatever the stats kernel gives), and with values
// 2^28 apart, whose f64 sums round (so a different summation order, e.g. bf16 rows into f32 outputs, shows).
static bool same_bits(double x, double y) { return std::memcmp(&x, &y, sizeof x) == 0; }
static void test_fused_next_row() {
  int cases = 0;
  for (int lv = 1; lv < 3; ++lv) {
    if (!cpu_supports(SimdLevel(lv)) || !kernels_for(SimdLevel(lv)).fused) continue;
    const FusedRowKernels& F = *kernels_for(SimdLevel(lv)).fused;
    for (DType dt : {DType::BF16, DType::F16, DType::F32})
      for (int64_t n : {1, 5, 15, 16, 31, 32, 33, 48, 63, 64, 100, 513, 4099})
        for (int nk = 0; nk < 4; ++nk) {
          Raw d = make_raw(2, n, dt, 0, unsigned(n * 5 + nk));
          // the next row with values 2^-14 .. 2^14 apart (nk 3): its f64 sums round, so their order shows
          if (nk == 3)
            for (int64_t j = 0; j < n; ++j) {
              const float sg = (j & 1) ? -1.0f : 1.0f;
              put_value(d.base, dt, size_t(n + j), std::ldexp(1.0f + float(j % 3) / 4.0f, int((j * 11) % 28) - 14));
              put_value(d.old_, dt, size_t(n + j), sg * std::ldexp(1.0f + float(j % 5) / 8.0f, int((j * 37) % 28) - 14));
              put_value(d.new_, dt, size_t(n + j), -sg * std::ldexp(1.0f + float(j % 7) / 8.0f, int((j * 23) % 28) - 14));
            }
          // the next row (row 1): signed zeros (nk 1), a NaN and an inf (nk 2)
          if (nk >= 1) {
            for (int64_t j = 0; j < n; j += 3) put_value(d.base, dt, size_t(n + j), -0.0f);
            for (int64_t j = 1; j < n; j += 4) put_value(d.old_, dt, size_t(n + j), -0.0f);
          }
          if (nk == 2) {
            put_value(d.new_, dt, size_t(n + n / 2), std::nanf(""));
            put_value(d.old_, dt, size_t(n + n - 1), INFINITY);
          }
          const size_t es = dtype_size(dt);
          const uint8_t *b1 = d.base.data() + size_t(n) * es, *o1 = d.old_.data() + size_t(n) * es, *w1 = d.new_.data() + size_t(n) * es;
          double sd, sa, sb;
          F.stats(dt, b1, o1, w1, n, &sd, &sa, &sb);
          const RowSelection sel{0x3d000000u, n / 3};
          for (int trim = 0; trim < 3; ++trim)      // none, side a, side b
            for (float co : {0.0f, -0.5f}) {
              if (trim == 1 && co == 0.0f) continue;  // a trimmed a has co != 0
              for (DType od : {DType::BF16, DType::F16, DType::F32})
                for (bool nt : {false, true}) {
                  const size_t bytes = size_t(n) * dtype_size(od);
                  std::vector<uint8_t> want(bytes + 128), got(bytes + 128);
                  uint8_t* w0 = want.data() + (64 - (reinterpret_cast<uintptr_t>(want.data()) & 63));
                  uint8_t* g0 = got.data() + (64 - (reinterpret_cast<uintptr_t>(got.data()) & 63));
                  double ka = -1, kb = -1, ka2 = -1, kb2 = -1;
                  const RowSelection* sa_ = trim == 1 ? &sel : nullptr;
                  const RowSelection* sb_ = trim == 2 ? &sel : nullptr;
                  const uint32_t m0 = F.output(dt, d.base.data(), d.old_.data(), d.new_.data(), n, 0.75f, co, sa_, sb_, &ka, &kb, od, w0, nt, nullptr);
                  for (bool sums : {true, false}) {  // NextRowStats::sums: summed between the blocks, or prefetched
                    NextRowStats nx{b1, o1, w1};
                    nx.sums = sums;
                    std::memset(got.data(), 0xA5, got.size());
                    ka2 = kb2 = -1;
                    const uint32_t m1 = F.output(dt, d.base.data(), d.old_.data(), d.new_.data(), n, 0.75f, co, sa_, sb_, &ka2, &kb2, od, g0, nt, &nx);
                    std::atomic_thread_fence(std::memory_order_seq_cst);
                    ++cases;
                    CHECK(std::memcmp(w0, g0, bytes) == 0 && m0 == m1 && same_bits(ka, ka2) && same_bits(kb, kb2),
                          "fused output with the next row's stats (%s, %s in %s out, n %lld, trim %d, co %g, nt %d, sums %d): other bytes",
                          kernels_for(SimdLevel(lv)).name, dtype_name(dt), dtype_name(od), (long long)n, trim, double(co), int(nt), int(sums));
                    CHECK(same_bits(nx.dot, sd) && same_bits(nx.na, sa) && same_bits(nx.nb, sb),
                          "next row's stats (%s, %s, n %lld, kind %d, trim %d, sums %d): %.17g %.17g %.17g vs %.17g %.17g %.17g",
                          kernels_for(SimdLevel(lv)).name, dtype_name(dt), (long long)n, nk, trim, int(sums), nx.dot, nx.na, nx.nb, sd, sa, sb);
                  }
                }
            }
        }
  }
  std::printf("fused output + next row's stats: %d cases\n", cases);
}

// process_rows' row pipeline (each fused row's output pass computes the next row's sums; each of its forms,
// geoedit.h RowPipeline) against the same rows edited one job per row (no pipeline): identical bytes, cos, regions, coefficients and deltaSq, bit for bit,
// for every strategy (geoedit's weights too: they come from those sums), densities 1 / 0.2 / 0.03, 1 to 67 rows
// (chunks of 2^17 elements: several per job at the widest rows), one thread or all, with rows that leave the
// pipeline mid-job: zero coefficients (base copied), both sides trimmed, a NaN row (allowNonFinite), a bf16 ->
// f16 overflow written by the unfused steps (allowNonFiniteOutput), signed zeros, and the last row.
static void test_fused_pipeline() {
  int rows_checked = 0;
  for (int lv = 1; lv < 3; ++lv) {
    if (!cpu_supports(SimdLevel(lv)) || !kernels_for(SimdLevel(lv)).fused) continue;
    for (DType dt : {DType::BF16, DType::F16, DType::F32})
      for (int64_t cols : {33, 100, 4099})
        for (int64_t R : {1, 2, 3, 67}) {
          if (cols < 4099 && R == 67) continue;
          if (cols == 4099 && R != 67 && R != 2) continue;
          Raw d = make_raw(R, cols, dt, 0, unsigned(cols * 3 + R));
          const size_t es = dtype_size(dt);
          for (int64_t i = 0; i < R; ++i) {
            if (i % 5 == 2)  // signed zeros
              for (int64_t j = 0; j < cols; j += 2) { put_value(d.base, dt, size_t(i * cols + j), -0.0f); put_value(d.new_, dt, size_t(i * cols + j), -0.0f); }
            if (i % 11 == 7) put_value(d.new_, dt, size_t(i * cols + cols / 2), std::nanf(""));
            if (dt == DType::BF16 && i % 13 == 4) put_value(d.new_, dt, size_t(i * cols + 1), 3e38f);  // overflows f16 (and bf16 with a scale)
          }
          std::vector<float> cnew(static_cast<size_t>(R)), cold(static_cast<size_t>(R));
          for (int64_t i = 0; i < R; ++i) {
            cnew[size_t(i)] = i % 4 == 3 ? 0.0f : 0.5f + 0.1f * float(i % 3);
            cold[size_t(i)] = i % 3 == 1 ? 0.0f : -0.25f;
          }
          for (double density : {1.0, 0.2, 0.03})
            for (int strat = 0; strat < 5; ++strat)
              for (DType od : {dt, DType::F16}) {
                Params p;
                p.density = density;
                p.allow_non_finite = true;
                p.allow_non_finite_output = true;
                if (strat == 1) p.strategy = Strategy::TaskArithmetic;
                if (strat == 2) p.strategy = Strategy::ForgetThenLearn;
                if (strat == 3) p.strategy = Strategy::Custom;
                if (strat == 4) { p.fuse_aligned = 0.7; p.forget_conflicting = 0.4; }
                for (int threads : {1, 0})
                for (RowPipeline pipe : {RowPipeline::Sums, RowPipeline::Prefetch, RowPipeline::Off}) {
                  const RowPipeline was = row_pipeline();
                  set_row_pipeline(pipe);
                  const RawOut got = run_raw(d, p, od, lv, threads, &cnew, &cold);
                  set_row_pipeline(was);
                  for (int64_t i = 0; i < R; ++i) {
                    Raw one{1, cols, dt, {}, {}, {}};
                    auto row = [&](const std::vector<uint8_t>& v) { return std::vector<uint8_t>(v.begin() + i * cols * es, v.begin() + (i + 1) * cols * es); };
                    one.base = row(d.base);
                    one.old_ = row(d.old_);
                    one.new_ = row(d.new_);
                    const std::vector<float> cn1{cnew[size_t(i)]}, co1{cold[size_t(i)]};
                    const RawOut ref = run_raw(one, p, od, lv, 1, &cn1, &co1);
                    const size_t rb = size_t(cols) * dtype_size(od), r = size_t(i);
                    ++rows_checked;
                    CHECK(std::memcmp(got.out.data() + r * rb, ref.out.data(), rb) == 0 && same_bits(got.cos[r], ref.cos[0]) &&
                              got.region[r] == ref.region[0] && got.cn[r] == ref.cn[0] && got.co[r] == ref.co[0] && same_bits(got.dsq[r], ref.dsq[0]),
                          "row pipeline (%s) vs one row per job: %s, %s in %s out, cols %lld, rows %lld, density %.2f, strategy %d, threads %d, row %lld",
                          row_pipeline_name(pipe), kernels_for(SimdLevel(lv)).name, dtype_name(dt), dtype_name(od), (long long)cols, (long long)R, density,
                          strat, threads, (long long)i);
                  }
                }
              }
        }
  }
  std::printf("row pipeline against one row per job: %d rows\n", rows_checked);
}

// Non-finite 16-bit inputs through the fused path: refused naming the row and column (the scalar
// message), or with allowNonFinite the reference's bytes (NaN and inf kept, orthogonal rows).
static void test_fused_non_finite() {
  for (DType dt : {DType::BF16, DType::F16}) {
    Raw d = make_raw(6, 70, dt, 0, 9);
    const uint16_t nan16 = dt == DType::BF16 ? 0x7fc0 : 0x7e00, inf16 = dt == DType::BF16 ? 0x7f80 : 0x7c00;
    std::memcpy(&d.new_[2 * (3 * 70 + 41)], &nan16, 2);
    std::memcpy(&d.old_[2 * (4 * 70 + 5)], &inf16, 2);
    std::string ref;
    for (int lv = 0; lv < 3; ++lv) {
      if (!cpu_supports(SimdLevel(lv))) continue;
      std::string msg;
      int64_t row = -1, col = -1;
      try {
        run_raw(d, Params(), dt, lv, 1);
      } catch (const Error& e) {
        if (e.code() == ErrorCode::NonFinite) { msg = e.what(); row = e.details().row; col = e.details().column; }
      }
      CHECK(row == 3 && col == 41, "%s non-finite input (%s): row %lld column %lld", dtype_name(dt), simd_name(SimdLevel(lv)), (long long)row,
            (long long)col);
      if (lv == 0) ref = msg;
      else CHECK(msg == ref, "%s non-finite message (%s): '%s' vs '%s'", dtype_name(dt), simd_name(SimdLevel(lv)), msg.c_str(), ref.c_str());
    }
    for (double density : {1.0, 0.2}) {
      Params p;
      p.allow_non_finite = true;
      p.density = density;
      p.strategy = Strategy::ForgetThenLearn;
      const RawOut want = run_raw(d, p, dt, 0, 1);
      for (int lv = 1; lv < 3; ++lv) {
        if (!cpu_supports(SimdLevel(lv))) continue;
        const RawOut got = run_raw(d, p, dt, lv, 1);
        CHECK(got.out == want.out && got.region == want.region, "%s allowNonFinite bytes (%s, density %.1f)", dtype_name(dt), simd_name(SimdLevel(lv)),
              density);
      }
    }
  }
  // An overflowing 16-bit output from bf16 inputs: named at the same column as the reference.
  Raw d = make_raw(5, 300, DType::BF16, 0, 4);
  put_value(d.base, DType::BF16, 2 * 300 + 217, 60000.f);
  put_value(d.new_, DType::BF16, 2 * 300 + 217, 70000.f);
  std::string ref;
  for (int lv = 0; lv < 3; ++lv) {
    if (!cpu_supports(SimdLevel(lv))) continue;
    std::string msg;
    try {
      run_raw(d, Params(), DType::F16, lv, 1);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::NonFiniteOutput && e.details().row == 2 && e.details().column == 217) msg = e.what();
    }
    CHECK(!msg.empty() && (lv == 0 || msg == ref), "bf16 -> f16 overflow named at row 2, column 217 (%s): '%s'", simd_name(SimdLevel(lv)), msg.c_str());
    if (lv == 0) ref = msg;
  }
}

// A temporary file (unlinked at once) holding `data`; -1 on failure.
static int temp_file(const std::string& data) {
  const char* tmp = std::getenv("TMPDIR");
  std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/geoedit-core-XXXXXX";
  const int fd = mkstemp(&path[0]);
  if (fd < 0) return -1;
  unlink(path.c_str());
  if (!data.empty() && pwrite(fd, data.data(), data.size(), 0) != ssize_t(data.size())) {
    close(fd);
    return -1;
  }
  return fd;
}

// OrderedHash (core/hash.h): writes fed on several threads in ticket order give the file's digest;
// pieces off the frontier are read back once; a feed hashes without the lock (ticket() is taken
// while another thread's feed is inside its hashing); finish refuses while a ticket is unserved.
static void test_ordered_hash() {
  if (!sha256_unavailable_reason().empty()) {
    std::printf("ordered hash checks skipped: %s\n", sha256_unavailable_reason().c_str());
    return;
  }
  auto one = [](const std::string& s) { Sha256 h; h.update(s.data(), s.size()); return h.hex(); };
  std::mt19937 g(11);
  std::string data(size_t(3) << 20, '\0');
  for (auto& c : data) c = char(g());
  const int fd = temp_file(data);
  CHECK(fd >= 0, "temp file for the ordered hash");
  if (fd < 0) return;
  // 48 pieces of 64 KiB fed from 4 threads, each piece by whichever thread its ticket was given to;
  // the tickets are taken in file order except pieces 10 and 11 swapped: 11 comes first, off the
  // frontier, then 10 continues it, and every later piece is off it (11 is not in the hash).
  {
    OrderedHash h;
    const size_t piece = size_t(64) << 10, n = data.size() / piece;
    std::vector<uint64_t> order(n);
    for (size_t k = 0; k < n; ++k) order[k] = k;
    std::swap(order[10], order[11]);
    std::vector<uint64_t> tickets(n);
    for (size_t k = 0; k < n; ++k) tickets[k] = h.ticket();
    std::vector<std::thread> ts;
    std::atomic<int> in_memory{0};
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&, t] {
        for (size_t k = size_t(t); k < n; k += 4) {
          const uint64_t at = order[k] * piece;
          if (h.feed(tickets[k], at, data.data() + at, piece)) ++in_memory;
        }
      });
    for (auto& t : ts) t.join();
    const OrderedHash::Result r = h.finish(fd, data.size(), "ordered.bin");
    CHECK(r.sha256 == one(data), "ordered hash of pieces fed on 4 threads");
    CHECK(r.from_memory == 11 * piece && r.reread == data.size() - 11 * piece,
          "hashed from memory up to the first gap, the rest read back once (%llu, %llu)",
          (unsigned long long)r.from_memory, (unsigned long long)r.reread);
    CHECK(in_memory.load() == 11, "feed() says which pieces reached the hash (%d)", in_memory.load());
  }
  // ticket() while a feed is hashing: taken on another thread while feed() is inside its turn.
  {
    OrderedHash h;
    std::atomic<bool> got{false};
    bool taken_during = false;
    h.on_feed_unlocked = [&] {
      std::thread([&] { h.ticket(); got = true; }).detach();
      for (int i = 0; i < 10000 && !got; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      taken_during = got;
    };
    CHECK(h.feed(h.ticket(), 0, data.data(), data.size()), "one feed of the whole file");
    for (int i = 0; i < 10000 && !got; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK(taken_during, "ticket() does not wait for another thread's feed to finish hashing");
    h.on_feed_unlocked = nullptr;
    // The ticket taken inside the hook is neither fed nor skipped: finish refuses, naming the file.
    bool refused = false;
    try {
      h.finish(fd, data.size(), "partial.bin");
    } catch (const Error& e) {
      refused = e.code() == ErrorCode::Internal && std::strstr(e.what(), "partial.bin") && std::strstr(e.what(), "1 of its 2 writes") &&
                e.details().file == "partial.bin";
    }
    CHECK(refused, "finish with a ticket neither fed nor skipped is an internal error naming the file");
    h.skip(1);
    std::string digest;
    try {
      digest = h.finish(fd, data.size(), "partial.bin").sha256;
    } catch (const Error& e) {
      digest = e.what();
    }
    CHECK(digest == one(data), "once every ticket is served, finish gives the file's digest (%s)", digest.c_str());
  }
  // A short file in finish: ERR_IO naming it (the pread loop shared with hash_files).
  {
    OrderedHash h;
    h.feed(h.ticket(), 0, data.data(), 1000);
    bool io = false;
    try {
      h.finish(fd, data.size() + 5, "short.bin");
    } catch (const Error& e) {
      io = e.code() == ErrorCode::Io && std::strstr(e.what(), "short.bin: unexpected end of file while hashing") && e.details().file == "short.bin";
    }
    CHECK(io, "finish on a file shorter than its size: Io naming it");
  }
  close(fd);
}

// bus::GuardedMap (core/busguard.h), the one mapped window of the stream and the file hash: the
// file's bytes; nullptr where a file cannot be mapped (a pipe); a file truncated under the window
// reads zeros and says so (the SIGBUS guard).
static void test_guarded_map() {
  std::string data(size_t(1) << 20, '\0');
  std::mt19937 g(5);
  for (auto& c : data) c = char(g());
  const int fd = temp_file(data);
  CHECK(fd >= 0, "temp file for the guarded map");
  if (fd < 0) return;
  {
    bus::GuardedMap w;
    const char* p = w.map(fd, 4097, 5000, true, false);
    CHECK(p && std::memcmp(p, data.data() + 4097, 5000) == 0 && !w.faulted(), "a window at an unaligned offset is the file's bytes");
    p = w.map(fd, 0, data.size(), false, true);
    CHECK(p && std::memcmp(p, data.data(), data.size()) == 0 && !w.faulted(), "a second window of the same object");
    CHECK(ftruncate(fd, 4096) == 0, "truncating the test file");
    volatile char sum = 0;
    for (size_t i = 0; i < data.size(); i += 4096) sum = char(sum + p[i]);  // past 4096: SIGBUS, repaired
    CHECK(w.faulted(), "a read past the new end is caught (faulted)");
    CHECK(p[8192] == 0 && p[0] == data[0], "the pages past the end read as zeros, those before as the file");
  }
  close(fd);
  int pipe_fd[2];
  if (pipe(pipe_fd) == 0) {
    bus::GuardedMap w;
    CHECK(w.map(pipe_fd[0], 0, 4096, false, false) == nullptr, "a pipe cannot be mapped: nullptr (the caller preads)");
    close(pipe_fd[0]);
    close(pipe_fd[1]);
  }
}

// WriteBehind (core/writebehind.h): contiguous small writes are merged (a system call per MiB, not
// per write); writes elsewhere are not; EIO is ERR_IO naming the tensor, at the latest at drain();
// an unsupported sync_file_range turns it off without an error.
static void test_write_behind() {
  const int fd = temp_file("");
  CHECK(fd >= 0, "temp file for the write-behind");
  if (fd < 0) return;
  const std::string block(4096, 'x');
  auto write_all = [&](WriteBehind& wb, size_t count, uint64_t stride) {
    for (size_t k = 0; k < count; ++k) {
      const uint64_t off = k * stride;
      CHECK(pwrite(fd, block.data(), block.size(), off_t(off)) == ssize_t(block.size()), "pwrite");
      wb.written(fd, off, block.size(), true, "t" + std::to_string(k));
    }
    wb.drain();
  };
  {
    WriteBehind probe(uint64_t(64) << 20, 0);
    probe.written(fd, 0, 4096, false, "probe");
    probe.drain();
    if (probe.syscalls() == 0) {
      CHECK(false, "a write-behind made no call");
      close(fd);
      return;
    }
    if (!probe.enabled()) {  // sync_file_range unsupported on this file system: nothing to merge
      std::printf("SKIP write-behind merging: sync_file_range is unsupported here\n");
      close(fd);
      return;
    }
  }
  {
    WriteBehind wb(uint64_t(64) << 20, 0);
    write_all(wb, 1024, 4096);  // 4 MiB in 4 KiB writes, contiguous
    // 4 merged ranges of 1 MiB: each handed to the kernel once, then waited for and dropped (3 calls each)
    CHECK(wb.syscalls() <= 12, "1024 contiguous 4 KiB writes: %llu system calls (<= 12)", (unsigned long long)wb.syscalls());
  }
  {
    WriteBehind wb(uint64_t(64) << 20, 0);
    write_all(wb, 64, 8192);  // gaps between the writes: nothing to merge
    CHECK(wb.syscalls() >= 64, "writes with gaps are not merged (%llu calls)", (unsigned long long)wb.syscalls());
  }
  {
    WriteBehind wb(uint64_t(64) << 20, EIO);
    bool io = false;
    try {
      write_all(wb, 3, 4096);  // 12 KiB: merged, handed over at drain()
    } catch (const Error& e) {
      io = e.code() == ErrorCode::Io && std::strstr(e.what(), "write failed (write-back)") && e.details().tensor == "t0";
    }
    CHECK(io, "EIO from a merged range is ERR_IO naming its first tensor");
  }
  {
    WriteBehind wb(uint64_t(64) << 20, ENOSYS);
    write_all(wb, 300, 4096);
    CHECK(wb.syscalls() == 1, "unsupported: one attempt, then off (%llu)", (unsigned long long)wb.syscalls());
  }
  close(fd);
}

// DirectWrites (core/directwrite.h): every split of a write (unaligned head and tail buffered, the
// aligned middle through O_DIRECT; small or misaligned-in-memory writes buffered) gives the file the
// same bytes; a refused open or write falls back to buffered writes with the same bytes; a failing
// direct write is Error(Io). Offsets and lengths around every alignment case.
static void test_direct_writes() {
  const uint64_t A = DirectWrites::kAlign, M = DirectWrites::kMinBytes;
  const size_t cap = size_t(M) * 3 + 3 * A;
  void* mem = nullptr;
  CHECK(posix_memalign(&mem, A, cap + A) == 0, "aligned buffer");
  char* base = static_cast<char*>(mem);
  std::mt19937 g(17);
  for (size_t i = 0; i < cap + A; ++i) base[i] = char(g());
  struct Case { uint64_t off, len; bool lined_up; };
  std::vector<Case> cases;
  for (uint64_t off : {uint64_t(0), uint64_t(1), A - 1, A, A + 1, 3 * A + 123})
    for (uint64_t len : {uint64_t(0), uint64_t(1), A - 1, A, M - 1, M, M + A - 1, M + 2 * A + 7, 2 * M + 5})
      for (bool lu : {true, false}) cases.push_back({off, len, lu});
  bool any_direct = false;
  for (int mode : {int(DirectWrites::On), int(DirectWrites::Off), int(DirectWrites::RefuseOpen), int(DirectWrites::RefuseWrite)}) {
    const int fd = temp_file("");
    CHECK(fd >= 0, "temp file for the direct writes");
    if (fd < 0) break;
    const DirectWrites::Stats s0 = DirectWrites::stats();
    uint64_t at = 0, reported = 0;  // each case at its own place in one file, laid out one after the other
    std::vector<char> want;
    bool have_dfd = false;
    {
      DirectWrites dw(mode);
      const int dfd = dw.fd_for(fd);
      have_dfd = dfd >= 0;
      CHECK(dw.fd_for(fd) == dfd, "fd_for is cached");
      if (mode == DirectWrites::On && dfd < 0) std::printf("SKIP direct writes: O_DIRECT refused by the file system of TMPDIR\n");
      if (mode == DirectWrites::Off || mode == DirectWrites::RefuseOpen) CHECK(dfd < 0, "mode %d: no O_DIRECT descriptor", mode);
      for (const Case& c : cases) {
        const uint64_t off = (at + A - 1) / A * A + c.off;  // the case's offset within a page
        const char* p = base + (c.lined_up ? off % A : (off + 8) % A);
        if (want.size() < off + c.len) want.resize(size_t(off + c.len), 0);
        std::memcpy(want.data() + off, p, size_t(c.len));
        dw.write(fd, dfd, p, size_t(c.len), off, [&](uint64_t, uint64_t n) { reported += n; });
        at = off + c.len + 1;
      }
    }
    const DirectWrites::Stats s1 = DirectWrites::stats();
    const uint64_t direct = s1.direct - s0.direct, buffered = s1.buffered - s0.buffered, refused = s1.refused - s0.refused;
    uint64_t total = 0;
    for (const Case& c : cases) total += c.len;
    CHECK(direct + buffered == total && reported == buffered, "mode %d: every byte written once, the buffered ones reported (%llu + %llu of %llu)",
          mode, (unsigned long long)direct, (unsigned long long)buffered, (unsigned long long)total);
    std::vector<char> got(want.size());
    CHECK(pread(fd, got.data(), got.size(), 0) == ssize_t(got.size()) && got == want, "mode %d: the file's bytes", mode);
    if (mode == DirectWrites::On) {
      any_direct = direct > 0;
      // Lined-up cases with >= kMinBytes aligned: their aligned middles; nothing else.
      uint64_t expect = 0;
      at = 0;
      for (const Case& c : cases) {
        const uint64_t off = (at + A - 1) / A * A + c.off, a = (off + A - 1) / A * A, b = (off + c.len) / A * A;
        if (c.lined_up && b > a && b - a >= M) expect += b - a;
        at = off + c.len + 1;
      }
      if (have_dfd) CHECK(direct == expect, "the aligned middles went direct: %llu of %llu bytes", (unsigned long long)direct, (unsigned long long)expect);
    }
    if (mode != DirectWrites::On) CHECK(direct == 0, "mode %d: nothing written direct (%llu)", mode, (unsigned long long)direct);
    if (mode == DirectWrites::RefuseOpen) CHECK(refused == 1, "refused open counted once (%llu)", (unsigned long long)refused);
    if (mode == DirectWrites::RefuseWrite && any_direct) CHECK(refused == 1, "refused write: once, then buffered (%llu)", (unsigned long long)refused);
    close(fd);
  }
  if (any_direct) {
    // A failing direct write is the write's error, not a fallback.
    const int fd = temp_file("");
    DirectWrites dw(DirectWrites::FailWrite);
    const int dfd = dw.fd_for(fd);
    bool io = false;
    try {
      dw.write(fd, dfd, base, size_t(M), 0, [](uint64_t, uint64_t) {});
    } catch (const Error& e) {
      io = e.code() == ErrorCode::Io && std::strstr(e.what(), "write failed: Input/output error") != nullptr;
    }
    CHECK(io, "EIO from a direct write is Error(Io)");
    close(fd);
  }
  free(mem);
}

// Convert tasks (stream.cc run_convert_task, SPEC §5): each block decoded once, checked, encoded:
// the bytes equal convert()'s for every pair of dtypes, with and without the check; a finite input
// that overflows the output dtype is NonFiniteOutput naming the tensor and the element (in a later
// block, with an output file or analysing only); an input that was not finite is no error.
static void test_convert_task() {
  const size_t n = 100000;
  std::vector<float> vals(n);
  std::mt19937 g(9);
  std::normal_distribution<float> nd(0.f, 100.f);
  for (float& v : vals) v = nd(g);
  vals[5] = INFINITY;
  vals[6] = NAN;
  for (DType from : {DType::F32, DType::BF16, DType::F16}) {
    for (DType to : {DType::F32, DType::BF16, DType::F16}) {
      if (from == to) continue;
      for (int bad : {0, 1}) {
        std::vector<float> v = vals;
        if (bad) v[70001] = 1e6f;  // finite in f32 and bf16; overflows f16 (and is inf already in f16 inputs)
        std::vector<char> in(n * dtype_size(from)), want(n * dtype_size(to));
        convert(DType::F32, v.data(), from, in.data(), n);
        convert(from, in.data(), to, want.data(), n);
        const int in_fd = temp_file(std::string(in.begin(), in.end()));
        const int out_fd = temp_file("");
        CHECK(in_fd >= 0 && out_fd >= 0, "temp files for the convert task");
        if (in_fd < 0 || out_fd < 0) return;
        const bool overflows = bad && to == DType::F16 && from != DType::F16;
        for (int analyse : {0, 1}) {
          for (int allow : {0, 1}) {
            StreamTask t;
            t.kind = StreamTask::Convert;
            t.name = "conv.weight";
            t.rows = int64_t(n);
            t.cols = 1;
            t.base = {in_fd, 0, from, "in.bin"};
            t.out_fd = analyse ? -1 : out_fd;
            t.out_dtype = to;
            Params p;
            p.allow_non_finite_output = allow != 0;
            std::string msg;
            int64_t row = -2;
            try {
              run_stream({t}, p, RunOptions(), size_t(64) << 10, StreamControl());  // 64 KiB blocks: several
            } catch (const Error& e) {
              if (e.code() == ErrorCode::NonFiniteOutput) msg = e.what(), row = e.details().row;
              else msg = std::string("other error: ") + e.what();
            }
            const char* pair = dtype_name(from);
            if (overflows && !allow) {
              CHECK(row == 70001 && msg.find("tensor 'conv.weight' (converted, not edited): the value") != std::string::npos &&
                        msg.find("at element 70001 overflows f16") != std::string::npos,
                    "%s -> %s (analyse %d): the overflow named at element 70001: '%s'", pair, dtype_name(to), analyse, msg.c_str());
              continue;
            }
            CHECK(msg.empty(), "%s -> %s (bad %d, analyse %d, allow %d): no error expected, got '%s'", pair, dtype_name(to), bad, analyse, allow, msg.c_str());
            if (analyse) continue;
            std::vector<char> got(want.size());
            CHECK(pread(out_fd, got.data(), got.size(), 0) == ssize_t(got.size()) && got == want,
                  "%s -> %s (bad %d, allow %d): the bytes of convert()", pair, dtype_name(to), bad, allow);
          }
        }
        close(in_fd);
        close(out_fd);
      }
    }
  }
}

int main() {
  test_read_ahead();
  test_sha256();
  test_ordered_hash();
  test_guarded_map();
  test_write_behind();
  test_direct_writes();
  test_convert_task();
  test_trim_exact();
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
  test_non_finite_output(levels);
  test_fused_rows();
  test_fused_edges();
  test_fused_stream_stores();
  test_fused_next_row();
  test_fused_pipeline();
  test_fused_non_finite();
  std::printf("core_test: %d checks, %d passed, %d failed\n", checks, checks - failures, failures);
  return failures == 0 ? 0 : 1;
}
