// Plain C++ tests of the LoRA core (SPEC §4), built without any Node header
// (cmake -DGEOEDIT_BUILD_TESTS=ON, target geoedit_lora_test): factor-space geometry against the
// dense core on materialised rows and against an f64 reference, thread determinism, and the merge
// (both layouts) bit-identical to the dense output kernel with the same coefficients.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "geoedit/geoedit.h"
#include "core/lora.h"
#include "core/stream.h"

using namespace geoedit;

#include "check.h"

struct Side {
  int64_t r;
  double scale;
  std::vector<float> L, R;
  LoraSide view() const { LoraSide s; s.L = L.data(); s.R = R.data(); s.r = r; s.scale = scale; return s; }
};

static Side make_side(int64_t m, int64_t n, int64_t r, double scale, std::mt19937& g, const Side* share = nullptr) {
  std::normal_distribution<float> nd(0.f, 0.1f);
  Side s{r, scale, std::vector<float>(size_t(m * r)), std::vector<float>(size_t(r * n))};
  for (auto& v : s.L) v = nd(g);
  for (auto& v : s.R) v = nd(g);
  if (share && share->r == r) {
    // Rows share direction with `share` on a third of the rows (synergy), oppose on a third (conflict).
    s.R = share->R;
    for (int64_t i = 0; i < m; ++i) {
      const float sg = i % 3 == 0 ? 1.f : (i % 3 == 1 ? -1.f : 0.f);
      for (int64_t k = 0; k < r; ++k) s.L[size_t(i * r + k)] = sg * share->L[size_t(i * r + k)] + 0.3f * s.L[size_t(i * r + k)];
    }
  }
  return s;
}

static void test_geometry(int64_t m, int64_t n, int64_t ro, int64_t rn, unsigned seed) {
  std::mt19937 g(seed);
  Side o = make_side(m, n, ro, 16.0 / double(ro), g);
  Side nw = make_side(m, n, rn, 2.0, g, &o);
  Params p;
  p.fuse_aligned = 0.5;
  p.forget_conflicting = 0.5;
  LoraJob job;
  job.rows = m; job.cols = n; job.old_ = o.view(); job.new_ = nw.view(); job.tensor_name = "t";
  std::vector<double> cos(static_cast<size_t>(m)), na(static_cast<size_t>(m)), nb(static_cast<size_t>(m)), dot(static_cast<size_t>(m));
  std::vector<uint8_t> reg(static_cast<size_t>(m));
  std::vector<float> cn(static_cast<size_t>(m)), co(static_cast<size_t>(m));
  job.stats.cos = cos.data(); job.stats.region = reg.data(); job.stats.coef_new = cn.data(); job.stats.coef_old = co.data();
  job.stats.na = na.data(); job.stats.nb = nb.data(); job.dot = dot.data();
  run_lora_geometry(job, p);
  // Materialised rows through the dense core (tau given, analyse only).
  std::vector<float> to(static_cast<size_t>(m * n)), tn(static_cast<size_t>(m * n)), zero(size_t(m * n), 0.f);
  lora_materialize(o.view(), n, 0, m, to.data());
  lora_materialize(nw.view(), n, 0, m, tn.data());
  EditJob e;
  e.rows = m; e.cols = n; e.tau_given = true;
  e.base.data = zero.data(); e.old_.data = to.data(); e.new_.data = tn.data();
  std::vector<double> dcos(static_cast<size_t>(m));
  std::vector<uint8_t> dreg(static_cast<size_t>(m));
  std::vector<float> dcn(static_cast<size_t>(m)), dco(static_cast<size_t>(m));
  e.stats.cos = dcos.data(); e.stats.region = dreg.data(); e.stats.coef_new = dcn.data(); e.stats.coef_old = dco.data();
  run_edit(e, p);
  const double t = region_threshold(p, n);
  int regions_seen[3] = {0, 0, 0};
  for (int64_t i = 0; i < m; ++i) {
    // f64 reference from the definition.
    double d = 0, x = 0, y = 0;
    for (int64_t j = 0; j < n; ++j) {
      double a = 0, b = 0;
      for (int64_t k = 0; k < ro; ++k) a += double(o.L[size_t(i * ro + k)]) * double(o.R[size_t(k * n + j)]);
      for (int64_t k = 0; k < rn; ++k) b += double(nw.L[size_t(i * rn + k)]) * double(nw.R[size_t(k * n + j)]);
      a *= o.scale; b *= nw.scale;
      d += a * b; x += a * a; y += b * b;
    }
    const double ref = d / std::sqrt(x * y);
    CHECK(std::fabs(cos[size_t(i)] - ref) < 1e-9, "m=%lld r=%lld/%lld row %lld: cos %.17g vs f64 %.17g", (long long)m, (long long)ro, (long long)rn, (long long)i, cos[size_t(i)], ref);
    CHECK(std::fabs(cos[size_t(i)] - dcos[size_t(i)]) < 1e-6, "row %lld: factor cos %.9g vs materialised %.9g", (long long)i, cos[size_t(i)], dcos[size_t(i)]);
    if (std::fabs(std::fabs(dcos[size_t(i)]) - t) > 1e-6) {
      CHECK(reg[size_t(i)] == dreg[size_t(i)], "row %lld: region %d vs %d", (long long)i, reg[size_t(i)], dreg[size_t(i)]);
      CHECK(cn[size_t(i)] == dcn[size_t(i)], "row %lld: c_new", (long long)i);
      CHECK(std::fabs(co[size_t(i)] - dco[size_t(i)]) <= 1e-6 * std::fabs(dco[size_t(i)]) + 1e-12, "row %lld: c_old %g vs %g", (long long)i, co[size_t(i)], dco[size_t(i)]);
    }
    regions_seen[reg[size_t(i)]]++;
  }
  CHECK(regions_seen[1] > 0 && regions_seen[2] > 0, "expected synergy and conflict rows (%d, %d)", regions_seen[1], regions_seen[2]);
  // Same bytes with 1 thread.
  std::vector<double> cos1(static_cast<size_t>(m));
  std::vector<float> co1(static_cast<size_t>(m));
  LoraJob j1 = job;
  j1.stats.cos = cos1.data(); j1.stats.coef_old = co1.data(); j1.stats.region = nullptr; j1.stats.coef_new = nullptr; j1.stats.na = j1.stats.nb = j1.dot = nullptr;
  RunOptions one;
  one.threads = 1;
  run_lora_geometry(j1, p, one);
  CHECK(std::memcmp(cos1.data(), cos.data(), cos.size() * 8) == 0, "cos differs between 1 and all threads");
  CHECK(std::memcmp(co1.data(), co.data(), co.size() * 4) == 0, "c_old differs between 1 and all threads");
}

static void test_merge(bool transposed, DType dt, unsigned seed) {
  std::mt19937 g(seed);
  const int64_t m = 45, n = 37;
  Side o = make_side(m, n, 8, 2.0, g), nw = make_side(m, n, 5, 1.5, g);
  std::normal_distribution<float> nd(0.f, 0.3f);
  std::vector<float> baseN(size_t(m * n));
  for (auto& v : baseN) v = nd(g);
  std::vector<uint16_t> base16(baseN.size());
  if (dt != DType::F32) convert(DType::F32, baseN.data(), dt, base16.data(), baseN.size());
  const void* bN = dt == DType::F32 ? static_cast<const void*>(baseN.data()) : static_cast<const void*>(base16.data());
  const size_t es = dtype_size(dt);
  std::vector<char> stored(baseN.size() * es);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const size_t src = size_t(i * n + j), dst = transposed ? size_t(j * m + i) : src;
      std::memcpy(stored.data() + dst * es, static_cast<const char*>(bN) + src * es, es);
    }
  std::vector<float> cn(static_cast<size_t>(m)), co(static_cast<size_t>(m));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int64_t i = 0; i < m; ++i) { cn[size_t(i)] = i % 7 == 0 ? 0.f : u(g); co[size_t(i)] = i % 7 == 0 ? 0.f : u(g); }
  LoraMergeJob mj;
  mj.rows = m; mj.cols = n; mj.old_ = o.view(); mj.new_ = nw.view(); mj.c_new = cn.data(); mj.c_old = co.data();
  mj.transposed = transposed; mj.out_dtype = dt; mj.tensor_name = "t";
  const int64_t srows = transposed ? n : m, scols = transposed ? m : n;
  std::vector<char> out(stored.size());
  const int64_t cut = srows / 3;
  for (int part = 0; part < 2; ++part) {
    mj.s0 = part ? cut : 0; mj.s1 = part ? srows : cut;
    mj.base.dtype = dt; mj.base.data = stored.data() + size_t(mj.s0 * scols) * es;
    mj.out = out.data() + size_t(mj.s0 * scols) * es;
    run_lora_merge(mj);
  }
  // Reference: the dense core, strategy custom with the same coefficients, on materialised rows.
  std::vector<float> to(static_cast<size_t>(m * n)), tn(static_cast<size_t>(m * n));
  lora_materialize(o.view(), n, 0, m, to.data());
  lora_materialize(nw.view(), n, 0, m, tn.data());
  EditJob e;
  e.rows = m; e.cols = n; e.tau_given = true;
  e.base.dtype = dt; e.base.data = bN; e.old_.data = to.data(); e.new_.data = tn.data();
  e.c_new = cn.data(); e.c_old = co.data(); e.out_dtype = dt;
  std::vector<char> ref(stored.size());
  e.out = ref.data();
  Params p;
  p.strategy = Strategy::Custom;
  run_edit(e, p);
  int bad = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const size_t s = transposed ? size_t(j * m + i) : size_t(i * n + j);
      if (std::memcmp(out.data() + s * es, ref.data() + size_t(i * n + j) * es, es) != 0) ++bad;
    }
  CHECK(bad == 0, "merge %s %s: %d elements differ from the dense core", transposed ? "transposed" : "rows", dtype_name(dt), bad);
}

// The stream's LoraMerge task (a merged adapter written file to file in blocks) gives the same
// bytes and row statistics as the in-memory LoRA path: factor-space geometry + run_lora_merge at
// density 1, materialised rows through run_edit (tau given) below it; both layouts, f32 and bf16.
static void test_stream_lora(bool transposed, DType dt, double density, unsigned seed) {
  std::mt19937 g(seed);
  const int64_t m = 45, n = 37;
  Side o = make_side(m, n, 6, 2.0, g), nw = make_side(m, n, 4, 1.5, g, nullptr);
  std::normal_distribution<float> nd(0.f, 0.3f);
  std::vector<float> baseN(size_t(m * n));
  for (auto& v : baseN) v = nd(g);
  const size_t es = dtype_size(dt);
  std::vector<char> bN(baseN.size() * es);
  convert(DType::F32, baseN.data(), dt, bN.data(), baseN.size());
  std::vector<char> stored(bN.size());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const size_t src = size_t(i * n + j), dst = transposed ? size_t(j * m + i) : src;
      std::memcpy(stored.data() + dst * es, bN.data() + src * es, es);
    }
  char in_path[] = "/tmp/geoedit-lora-in-XXXXXX", out_path[] = "/tmp/geoedit-lora-out-XXXXXX";
  const int in = mkstemp(in_path), out = mkstemp(out_path);
  const uint64_t off = 64;
  CHECK(pwrite(in, stored.data(), stored.size(), off_t(off)) == ssize_t(stored.size()), "write the base file");
  Params p;
  p.density = density;
  p.fuse_aligned = 0.5;
  p.forget_conflicting = 0.5;
  StreamTask t;
  t.kind = StreamTask::LoraMerge;
  t.name = "model.w";
  t.rows = m;
  t.cols = n;
  t.base.fd = in;
  t.base.offset = off;
  t.base.dtype = dt;
  t.base.file = in_path;
  t.lora_old = o.view();
  t.lora_new = nw.view();
  t.transposed = transposed;
  t.out_fd = out;
  t.out_offset = 8;
  t.out_dtype = dt;
  std::vector<double> cos(static_cast<size_t>(m)), dsq(static_cast<size_t>(m));
  std::vector<float> cn(static_cast<size_t>(m)), co(static_cast<size_t>(m));
  t.stats.cos = cos.data();
  t.stats.coef_new = cn.data();
  t.stats.coef_old = co.data();
  t.stats.delta_sq = dsq.data();
  StreamControl ctl;
  run_stream({t}, p, RunOptions(), 300, ctl);  // 300-byte blocks: many of them
  std::vector<char> got(stored.size());
  CHECK(pread(out, got.data(), got.size(), 8) == ssize_t(got.size()), "read the output file");
  // Reference: the in-memory path (what lib/lora-math.ts runs).
  std::vector<char> ref(stored.size());
  std::vector<double> rcos(static_cast<size_t>(m)), rdsq(static_cast<size_t>(m));
  std::vector<float> rcn(static_cast<size_t>(m)), rco(static_cast<size_t>(m));
  if (density == 1.0) {
    LoraJob gj;
    gj.rows = m; gj.cols = n; gj.old_ = o.view(); gj.new_ = nw.view(); gj.tensor_name = "model.w";
    gj.stats.cos = rcos.data(); gj.stats.coef_new = rcn.data(); gj.stats.coef_old = rco.data(); gj.stats.delta_sq = rdsq.data();
    run_lora_geometry(gj, p);
    LoraMergeJob mj;
    mj.rows = m; mj.cols = n; mj.old_ = o.view(); mj.new_ = nw.view(); mj.c_new = rcn.data(); mj.c_old = rco.data();
    mj.transposed = transposed; mj.s0 = 0; mj.s1 = transposed ? n : m; mj.base.dtype = dt; mj.base.data = stored.data();
    mj.out_dtype = dt; mj.out = ref.data(); mj.tensor_name = "model.w";
    run_lora_merge(mj);
  } else {
    std::vector<float> to(static_cast<size_t>(m * n)), tn(static_cast<size_t>(m * n));
    lora_materialize(o.view(), n, 0, m, to.data());
    lora_materialize(nw.view(), n, 0, m, tn.data());
    EditJob e;
    e.rows = m; e.cols = n; e.tau_given = true;
    e.base.dtype = dt; e.base.data = bN.data(); e.old_.data = to.data(); e.new_.data = tn.data();
    e.out_dtype = dt;
    std::vector<char> rowsOut(stored.size());
    e.out = rowsOut.data();
    e.stats.cos = rcos.data(); e.stats.coef_new = rcn.data(); e.stats.coef_old = rco.data(); e.stats.delta_sq = rdsq.data();
    run_edit(e, p);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const size_t src = size_t(i * n + j), dst = transposed ? size_t(j * m + i) : src;
        std::memcpy(ref.data() + dst * es, rowsOut.data() + src * es, es);
      }
  }
  const char* what = transposed ? "transposed" : "rows";
  CHECK(std::memcmp(got.data(), ref.data(), ref.size()) == 0, "stream LoRA %s %s density %g: bytes differ from the in-memory path", what, dtype_name(dt), density);
  CHECK(std::memcmp(cos.data(), rcos.data(), cos.size() * 8) == 0 && std::memcmp(cn.data(), rcn.data(), cn.size() * 4) == 0 &&
            std::memcmp(co.data(), rco.data(), co.size() * 4) == 0 && std::memcmp(dsq.data(), rdsq.data(), dsq.size() * 8) == 0,
        "stream LoRA %s %s density %g: row statistics differ", what, dtype_name(dt), density);
  bool moved = false;
  for (size_t k = 0; k < got.size() && !moved; ++k) moved = got[k] != stored[k];
  CHECK(moved, "stream LoRA %s: the output differs from the base", what);
  close(in);
  close(out);
  unlink(in_path);
  unlink(out_path);
}

int main() {
  for (bool tr : {false, true})
    for (DType d : {DType::F32, DType::BF16})
      for (double density : {1.0, 0.5}) test_stream_lora(tr, d, density, 40 + unsigned(d) + (tr ? 3 : 0));
  test_geometry(96, 80, 1, 1, 1);
  test_geometry(96, 80, 8, 8, 2);
  test_geometry(64, 130, 64, 64, 3);
  test_geometry(700, 300, 16, 16, 4);  // big enough for several threads
  test_geometry(50, 120, 4, 4, 5);
  for (bool t : {false, true})
    for (DType d : {DType::F32, DType::BF16, DType::F16}) test_merge(t, d, 10 + unsigned(d) + (t ? 5 : 0));
  // A side that is absent: cos 0, every row orthogonal.
  {
    std::mt19937 g(9);
    Side nw = make_side(20, 10, 4, 1.0, g);
    LoraJob job;
    job.rows = 20; job.cols = 10; job.new_ = nw.view();
    std::vector<double> cos(20, 1.0);
    std::vector<uint8_t> reg(20, 9);
    job.stats.cos = cos.data(); job.stats.region = reg.data();
    run_lora_geometry(job, Params());
    bool ok = true;
    for (int i = 0; i < 20; ++i) ok = ok && cos[size_t(i)] == 0 && reg[size_t(i)] == uint8_t(Region::Orthogonal);
    CHECK(ok, "one-sided module: expected cos 0 and orthogonal rows");
  }
  // density < 1 is refused in factor space.
  {
    Params p;
    p.density = 0.5;
    LoraJob job;
    job.rows = 1; job.cols = 1;
    bool threw = false;
    try { run_lora_geometry(job, p); } catch (const Error& e) { threw = e.code() == ErrorCode::InvalidArgument; }
    CHECK(threw, "density < 1 should be refused");
  }
  std::printf("lora_test: %d checks, %d passed, %d failed\n", checks, checks - failures, failures);
  return failures ? 1 : 0;
}
