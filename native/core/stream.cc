// The checkpoint data path (see stream.h).
#include "stream.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <sstream>

namespace geoedit {

namespace {

size_t page_size() {
  static const size_t ps = size_t(sysconf(_SC_PAGESIZE));
  return ps;
}

// Block buffers are mapped directly (not malloc'ed): each call runs on whichever libuv thread is
// free, and glibc would keep freed 8 MiB blocks in that thread's arena, so RSS would creep up
// with the number of calls. munmap gives the memory back at once.
struct AlignedBuf {
  char* p = nullptr;
  size_t cap = 0;
  ~AlignedBuf() { release(); }
  void release() {
    if (p) ::munmap(p, cap);
    p = nullptr;
    cap = 0;
  }
  char* get(size_t n) {
    if (n > cap) {
      release();
      const size_t want = (std::max<size_t>(n, 1) + page_size() - 1) & ~(page_size() - 1);
      void* m = ::mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) throw std::bad_alloc();
      p = static_cast<char*>(m);
      cap = want;
    }
    return p;
  }
};

void pread_all(const StreamSrc& s, char* dst, size_t len, uint64_t off) {
  size_t got = 0;
  while (got < len) {
    ssize_t r = ::pread(s.fd, dst + got, len - got, off_t(off + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::Io, s.file + ": read failed: " + std::strerror(errno), file_details(s.file));
    }
    if (r == 0) throw Error(ErrorCode::Io, s.file + ": unexpected end of file (was it truncated while being read?)", file_details(s.file));
    got += size_t(r);
  }
}

void pwrite_all(int fd, const char* src, size_t len, uint64_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t r = ::pwrite(fd, src + done, len - done, off_t(off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::Io, std::string("write failed: ") + std::strerror(errno));
    }
    done += size_t(r);
  }
}

// ---- Inputs that change under the edit (issue 14 class 6a) ----------------------------------------
// A mapped input that another process truncates (or rewrites through O_TRUNC) makes any read of
// the pages past the new end raise SIGBUS, in whichever thread reads them: the core's pool threads
// read mapped blocks directly. A sigsetjmp/siglongjmp guard would have to jump out of the middle
// of a pool task (locks, counters, other threads still inside the block), so instead the handler
// repairs the fault: when the address lies in a registered window, it maps anonymous zero pages
// over the rest of that window (mmap MAP_FIXED, a plain system call) and marks the window; the
// faulting read resumes, reads zeros, and the block finishes. The stream thread then sees the mark
// and throws ERR_IO naming the file and tensor, so the zeros never reach a committed output. Any
// other SIGBUS goes to the previous handler (or the default action). In addition every block
// checks the file with fstat (size and mtime against the first look in this run): a truncation
// before a block is mapped, or an in-place rewrite, is ERR_IO too.
namespace bus {

struct Slot {
  std::atomic<uintptr_t> lo{0}, hi{0};
  std::atomic<int> hit{0};
};
constexpr int kSlots = 512;
Slot g_slots[kSlots];
struct sigaction g_prev;
uintptr_t g_page = 4096;

void on_sigbus(int sig, siginfo_t* si, void* uc) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr);
  for (Slot& s : g_slots) {
    const uintptr_t lo = s.lo.load(std::memory_order_acquire), hi = s.hi.load(std::memory_order_acquire);
    if (lo == 0 || a < lo || a >= hi) continue;
    const uintptr_t from = a & ~(g_page - 1);
    void* r = ::mmap(reinterpret_cast<void*>(from), hi - from, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (r != MAP_FAILED) {
      s.hit.store(1, std::memory_order_release);
      return;  // the read is retried on the zero pages
    }
    break;
  }
  // Not a window of ours (or the repair failed): what would have happened without us.
  if (g_prev.sa_flags & SA_SIGINFO) {
    if (g_prev.sa_sigaction) { g_prev.sa_sigaction(sig, si, uc); return; }
  } else if (g_prev.sa_handler == SIG_IGN) {
    return;
  } else if (g_prev.sa_handler != SIG_DFL && g_prev.sa_handler) {
    g_prev.sa_handler(sig);
    return;
  }
  ::signal(SIGBUS, SIG_DFL);  // the fault repeats with the default action (core dump)
}

void install() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_page = uintptr_t(page_size());
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_prev);
  });
}

// A slot for [p, p + len), or nullptr when all are taken (the window is then read with pread).
Slot* claim(const void* p, size_t len) {
  for (Slot& s : g_slots) {
    uintptr_t z = 0;
    if (s.lo.load(std::memory_order_relaxed) == 0 && s.hi.compare_exchange_strong(z, 1)) {
      s.hit.store(0, std::memory_order_relaxed);
      s.hi.store(reinterpret_cast<uintptr_t>(p) + len, std::memory_order_release);
      s.lo.store(reinterpret_cast<uintptr_t>(p), std::memory_order_release);
      return &s;
    }
  }
  return nullptr;
}

void release(Slot* s) {
  s->lo.store(0, std::memory_order_release);
  s->hi.store(0, std::memory_order_release);
}

}  // namespace bus

// Size and mtime of each input file at its first block in this run; every later block compares.
class FileWatch {
 public:
  void check(const StreamSrc& s, uint64_t need_end) {
    struct stat st;
    if (::fstat(s.fd, &st) != 0) return;  // not a file we can stat: pread reports short reads
    if (!S_ISREG(st.st_mode)) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = seen_.find(s.fd);
    if (it == seen_.end()) it = seen_.emplace(s.fd, Look{uint64_t(st.st_size), st.st_mtim}).first;
    const Look& first = it->second;
    if (uint64_t(st.st_size) < need_end || uint64_t(st.st_size) != first.size || st.st_mtim.tv_sec != first.mtime.tv_sec ||
        st.st_mtim.tv_nsec != first.mtime.tv_nsec)
      throw changed(s);
  }
  static Error changed(const StreamSrc& s) {
    return Error(ErrorCode::Io, s.file + ": the file changed while being read (truncated or rewritten by another process?)",
                 file_details(s.file));
  }

 private:
  struct Look {
    uint64_t size;
    struct timespec mtime;
  };
  std::mutex mu_;
  std::map<int, Look> seen_;
};

// One input block: a mapped window of the file, or an aligned copy when the tensor is misaligned.
class Window {
 public:
  Window() = default;
  Window(const Window&) = delete;
  ~Window() { release(); }
  const char* open(const StreamSrc& s, uint64_t rel, size_t len, AlignedBuf& fallback, FileWatch& watch) {
    release();
    static const char kEmpty[64] = {0};
    if (len == 0) return kEmpty;
    const uint64_t abs = s.offset + rel;
    watch.check(s, abs + len);
    src_ = &s;
    end_ = abs + len;
    static const int mode = [] {
      const char* e = std::getenv("GEOEDIT_STREAM_IO");
      return e && std::strcmp(e, "pread") == 0 ? 1 : 0;  // GEOEDIT_STREAM_IO=pread: never map
    }();
    if (mode == 1 || s.offset % dtype_size(s.dtype) != 0) {
      char* p = fallback.get(len);
      pread_all(s, p, len, abs);
      return p;
    }
    const uint64_t start = abs & ~uint64_t(page_size() - 1);
    const size_t maplen = size_t(abs - start) + len;
    void* m = ::mmap(nullptr, maplen, PROT_READ, MAP_SHARED, s.fd, off_t(start));
    if (m == MAP_FAILED) {
      // Not mappable (a pipe, a special file system): fall back to pread.
      char* p = fallback.get(len);
      pread_all(s, p, len, abs);
      return p;
    }
    bus::Slot* slot = bus::claim(m, maplen);
    if (!slot) {  // every guard slot in use (hundreds of concurrent streams): read this block instead
      ::munmap(m, maplen);
      char* p = fallback.get(len);
      pread_all(s, p, len, abs);
      return p;
    }
    ::madvise(m, maplen, MADV_SEQUENTIAL);
    map_ = m;
    map_len_ = maplen;
    slot_ = slot;
    // Tests only (test/native/hostile-memory.test.ts): the file shrinks right after it is mapped,
    // the one moment a real truncation cannot be timed from outside.
    static const bool kTruncateMapped = std::getenv("GEOEDIT_TEST_TRUNCATE_MAPPED") != nullptr;
    if (kTruncateMapped && ::ftruncate(s.fd, off_t(start)) != 0) {}
    return static_cast<const char*>(m) + (abs - start);
  }
  // After the block's work: ERR_IO if a read of the mapping faulted (the file shrank under it).
  // And ERR_IO if the file's size or mtime changed meanwhile.
  void verify(FileWatch& watch) const {
    if (slot_ && slot_->hit.load(std::memory_order_acquire))
      throw Error(ErrorCode::Io, src_->file + ": the file shrank while being read (truncated by another process?)",
                  file_details(src_->file));
    if (src_) watch.check(*src_, end_);
  }
  void release() {
    src_ = nullptr;
    if (slot_) bus::release(slot_);
    if (map_) ::munmap(map_, map_len_);
    map_ = nullptr;
    map_len_ = 0;
    slot_ = nullptr;
  }

 private:
  void* map_ = nullptr;
  size_t map_len_ = 0;
  bus::Slot* slot_ = nullptr;
  const StreamSrc* src_ = nullptr;
  uint64_t end_ = 0;
};

struct Ctx {
  explicit Ctx(const StreamControl& c) : ctl(c) {}
  const StreamControl& ctl;
  double done = 0;
  FileWatch watch;
  void check_cancel(const std::string& name) const {
    if (ctl.cancel) {
      double c;
      __atomic_load(ctl.cancel, &c, __ATOMIC_RELAXED);
      if (c != 0) throw Error(ErrorCode::Aborted, "aborted while processing tensor '" + name + "'", tensor_details(name));
    }
  }
  void add(double bytes) {
    done += bytes;
    if (ctl.bytes_done) __atomic_store(ctl.bytes_done, &done, __ATOMIC_RELAXED);
  }
};

// Two output buffers; the pwrite of one overlaps the compute of the next.
struct Writer {
  AlignedBuf buf[2];
  std::future<void> pending[2];
  int next = 0;
  char* acquire(size_t n) {
    if (pending[next].valid()) pending[next].get();
    return buf[next].get(n);
  }
  void submit(int fd, size_t n, uint64_t off, const std::string& name) {
    const char* p = buf[next].p;
    pending[next] = std::async(std::launch::async, [fd, p, n, off, name] {
      try {
        pwrite_all(fd, p, n, off);
      } catch (const Error& e) {
        ErrorDetails d = e.details();
        d.tensor = name;
        throw Error(e.code(), std::string(e.what()) + " (tensor '" + name + "')", d);
      }
    });
    next ^= 1;
  }
  void drain() {
    for (auto& f : pending)
      if (f.valid()) f.get();
  }
  ~Writer() {
    for (auto& f : pending)
      if (f.valid()) f.wait();
  }
};

// I/O, CUDA and argument errors (a cudaMemoryLimit too small for one row) get the tensor's name;
// bad-input errors name it already (tensor and row).
[[noreturn]] void with_name(const StreamTask& t, const Error& e) {
  std::string m = e.what();
  const bool add = e.code() == ErrorCode::Io || e.code() == ErrorCode::Cuda || e.code() == ErrorCode::InvalidArgument;
  if (add && m.find("'" + t.name + "'") == std::string::npos) m += " (tensor '" + t.name + "')";
  ErrorDetails d = e.details();
  if (d.tensor.empty()) d.tensor = t.name;
  throw Error(e.code(), m, d);
}

int64_t rows_per_block(const StreamTask& t, size_t block_bytes) {
  const size_t widest = std::max({dtype_size(t.base.dtype), dtype_size(t.old_.dtype), dtype_size(t.new_.dtype),
                                  dtype_size(t.out_dtype)});
  return std::max<int64_t>(1, int64_t(block_bytes / std::max<size_t>(1, size_t(t.cols) * widest)));
}

// Read-ahead: while block i is being edited, a helper thread asks the kernel to read block i+1 of
// every input into the page cache (posix_fadvise WILLNEED), so the disk read of the next block
// overlaps the work on this one. The kernel caps one WILLNEED call at its read-ahead window (8 MiB
// on the development VM, often less), so the range is advised in 1 MiB pieces. A hint: failures
// are ignored. On by default on the GPU path only (on the CPU path, with a warm page cache, the
// extra page-cache walks cost more than they gave in a quick measurement);
// GEOEDIT_STREAM_READAHEAD=0 turns it off, =1 turns it on for both backends.
class ReadAhead {
 public:
  explicit ReadAhead(bool cuda) {
    const char* e = std::getenv("GEOEDIT_STREAM_READAHEAD");
    on_ = e && *e ? std::strcmp(e, "0") != 0 : cuda;
  }
  ReadAhead(const ReadAhead&) = delete;
  ~ReadAhead() { wait(); }
  // Rows [r0, r1) of every input of edit task t (t outlives the call: it is one of run_stream's tasks).
  void start(const StreamTask& t, int64_t r0, int64_t r1) {
    if (!on_ || r1 <= r0) return;
    wait();
    pending_ = std::async(std::launch::async, [&t, r0, r1] { advise(t, r0, r1); });
  }
  void wait() {
    if (pending_.valid()) pending_.wait();
  }

 private:
  static void advise(const StreamTask& t, int64_t r0, int64_t r1) {
#ifdef POSIX_FADV_WILLNEED
    constexpr uint64_t kPiece = uint64_t(1) << 20;
    for (const StreamSrc* s : {&t.base, &t.old_, &t.new_, &t.imp_old, &t.imp_new}) {
      if (s->fd < 0) continue;
      const uint64_t row = uint64_t(t.cols) * dtype_size(s->dtype);
      const uint64_t a = s->offset + uint64_t(r0) * row, b = s->offset + uint64_t(r1) * row;
      for (uint64_t o = a; o < b; o += kPiece)
        ::posix_fadvise(s->fd, off_t(o), off_t(std::min(kPiece, b - o)), POSIX_FADV_WILLNEED);
    }
#else
    (void)t; (void)r0; (void)r1;
#endif
  }
  bool on_ = false;
  std::future<void> pending_;
};

void run_edit_task(const StreamTask& t, const StreamTask* next, const Params& params, const RunOptions& ro,
                   size_t block_bytes, const StreamBackend& be, Ctx& ctx, Writer& w, AlignedBuf fb[5], ReadAhead& ahead) {
  const int64_t cols = t.cols;
  const size_t bs = dtype_size(t.base.dtype), os = dtype_size(t.old_.dtype), ns = dtype_size(t.new_.dtype);
  const size_t outs = dtype_size(t.out_dtype);
  const bool has_imp = t.imp_old.fd >= 0;
  int64_t per_block = rows_per_block(t, block_bytes);
  // Preservation: whole GEMM blocks (the bytes do not depend on the caller's blocking), a few per call.
  if (t.preserve) per_block = std::max<int64_t>(4, (per_block + kPreserveBlockRows - 1) / kPreserveBlockRows) * kPreserveBlockRows;
  const bool tau_mem = t.tau_old_mem != nullptr;
  std::vector<char> bias_raw[3];
  PreserveBias bias;
  const bool aug = t.preserve && t.preserve->augmented();
  if (aug) {
    const StreamSrc* src[3] = {&t.bias_base, &t.bias_old, &t.bias_new};
    View* dst[3] = {&bias.base, &bias.old_, &bias.new_};
    for (int q = 0; q < 3; ++q) {
      bias_raw[q].resize(size_t(t.rows) * dtype_size(src[q]->dtype));
      pread_all(*src[q], bias_raw[q].data(), bias_raw[q].size(), src[q]->offset);
      dst[q]->dtype = src[q]->dtype;
    }
  }
  Window wb, wo, wn, wio, win;
  for (int64_t r0 = 0; r0 < t.rows; r0 += per_block) {
    ctx.check_cancel(t.name);
    const int64_t r1 = std::min(t.rows, r0 + per_block);
    const size_t nrows = size_t(r1 - r0), n = nrows * size_t(cols);
    // The next block (the first of the next edit task after the last one) is read meanwhile.
    if (r1 < t.rows) ahead.start(t, r1, std::min(t.rows, r1 + per_block));
    else if (next) ahead.start(*next, 0, std::min(next->rows, rows_per_block(*next, block_bytes)));
    EditJob job;
    job.rows = int64_t(nrows);
    job.cols = cols;
    job.base.dtype = t.base.dtype;
    job.old_.dtype = t.old_.dtype;
    job.new_.dtype = t.new_.dtype;
    job.base.data = wb.open(t.base, uint64_t(r0) * cols * bs, n * bs, fb[0], ctx.watch);
    if (tau_mem) {
      job.old_ = {DType::F32, t.tau_old_mem + size_t(r0) * size_t(cols)};
      job.new_ = {DType::F32, t.tau_new_mem + size_t(r0) * size_t(cols)};
      job.tau_given = true;
    } else {
      job.old_.data = wo.open(t.old_, uint64_t(r0) * cols * os, n * os, fb[1], ctx.watch);
      job.new_.data = wn.open(t.new_, uint64_t(r0) * cols * ns, n * ns, fb[2], ctx.watch);
    }
    PreserveBias blk_bias;
    if (t.preserve) {
      job.preserve = t.preserve;
      job.preserve_stats = t.preserve_stats;
      if (aug) {
        blk_bias = bias;
        for (int q = 0; q < 3; ++q) {
          View* v = q == 0 ? &blk_bias.base : q == 1 ? &blk_bias.old_ : &blk_bias.new_;
          v->data = bias_raw[q].data() + size_t(r0) * dtype_size(v->dtype);
        }
        if (t.bias_tau_old_out) blk_bias.tau_old_out = t.bias_tau_old_out + r0;
        if (t.bias_tau_new_out) blk_bias.tau_new_out = t.bias_tau_new_out + r0;
        job.preserve_bias = &blk_bias;
      }
    }
    if (has_imp) {
      const size_t ios = dtype_size(t.imp_old.dtype), ins = dtype_size(t.imp_new.dtype);
      job.imp_old.dtype = t.imp_old.dtype;
      job.imp_new.dtype = t.imp_new.dtype;
      job.imp_old.data = wio.open(t.imp_old, uint64_t(r0) * cols * ios, n * ios, fb[3], ctx.watch);
      job.imp_new.data = win.open(t.imp_new, uint64_t(r0) * cols * ins, n * ins, fb[4], ctx.watch);
    }
    if (t.c_new) job.c_new = t.c_new + r0;
    if (t.c_old) job.c_old = t.c_old + r0;
    job.out_dtype = t.out_dtype;
    char* out = nullptr;
    if (t.out_fd >= 0) out = w.acquire(n * outs);
    job.out = out;
    job.stats = rows_from(t.stats, r0);
    job.tensor_name = t.name;
    job.row_offset = r0;
    // The CUDA kernels take weights, not task vectors: preserved and in-memory-tau blocks run on the
    // CPU core (the projection on the GPU: core/cuda_backend.cc's preserve path, when available).
    if (be.cuda && !job.preserve && !job.tau_given) run_edit_cuda(job, params, be.cuda_opts);
    else run_edit(job, params, ro);
    for (const Window* w : {&wb, &wo, &wn, &wio, &win}) w->verify(ctx.watch);
    if (out) w.submit(t.out_fd, n * outs, t.out_offset + uint64_t(r0) * cols * outs, t.name);
    ctx.add(double(n * (bs + os + ns)));
  }
}

// A LoRA merge task (see stream.h). fb[0] is the base window's pread fallback.
void run_lora_task(const StreamTask& t, const Params& params, const RunOptions& ro, size_t block_bytes, Ctx& ctx,
                   Writer& w, AlignedBuf fb[5]) {
  const int64_t m = t.rows, n = t.cols;
  const int64_t stored_rows = t.transposed ? n : m, stored_cols = t.transposed ? m : n;
  const size_t bs = dtype_size(t.base.dtype), outs = dtype_size(t.out_dtype);
  const size_t row_in = size_t(stored_cols) * bs, row_out = size_t(stored_cols) * outs;
  const bool allow_out = params.allow_non_finite || params.allow_non_finite_output;
  Window wb;
  if (params.density == 1.0) {
    // Geometry for every neuron first (cheap: Gram matrices of the factors), then blocks of stored rows.
    LoraJob g;
    g.rows = m;
    g.cols = n;
    g.old_ = t.lora_old;
    g.new_ = t.lora_new;
    g.c_new = t.c_new;
    g.c_old = t.c_old;
    g.tensor_name = t.name;
    std::vector<float> cn, co;
    g.stats = t.stats;
    g.dot = t.dot;
    if (!g.stats.coef_new || !g.stats.coef_old) {
      cn.resize(size_t(m));
      co.resize(size_t(m));
      g.stats.coef_new = cn.data();
      g.stats.coef_old = co.data();
    }
    run_lora_geometry(g, params, ro);
    const int64_t per = std::max<int64_t>(1, int64_t(block_bytes / std::max<size_t>(1, std::max(row_in, row_out))));
    for (int64_t s0 = 0; s0 < stored_rows; s0 += per) {
      ctx.check_cancel(t.name);
      const int64_t s1 = std::min(stored_rows, s0 + per);
      const size_t nr = size_t(s1 - s0);
      LoraMergeJob j;
      j.rows = m;
      j.cols = n;
      j.old_ = t.lora_old;
      j.new_ = t.lora_new;
      j.c_new = g.stats.coef_new;
      j.c_old = g.stats.coef_old;
      j.transposed = t.transposed;
      j.s0 = s0;
      j.s1 = s1;
      j.base.dtype = t.base.dtype;
      j.base.data = wb.open(t.base, uint64_t(s0) * row_in, nr * row_in, fb[0], ctx.watch);
      j.out_dtype = t.out_dtype;
      j.tensor_name = t.name;
      j.allow_non_finite_output = allow_out;
      std::vector<char> sink;
      if (t.out_fd >= 0) {
        j.out = w.acquire(nr * row_out);
      } else {
        sink.resize(nr * row_out);
        j.out = sink.data();
      }
      run_lora_merge(j, ro);
      wb.verify(ctx.watch);
      if (t.out_fd >= 0) w.submit(t.out_fd, nr * row_out, t.out_offset + uint64_t(s0) * row_out, t.name);
      ctx.add(double(nr * row_in));
    }
    return;
  }
  // density < 1: materialised task-vector rows through the dense core.
  auto edit_rows = [&](int64_t i0, int64_t i1, const void* base_rows, void* out_rows) {
    const size_t nr = size_t(i1 - i0);
    std::vector<float> a(nr * size_t(n)), b(nr * size_t(n));
    lora_materialize(t.lora_old, n, i0, i1, a.data(), ro);
    lora_materialize(t.lora_new, n, i0, i1, b.data(), ro);
    EditJob job;
    job.rows = int64_t(nr);
    job.cols = n;
    job.base.dtype = t.base.dtype;
    job.base.data = base_rows;
    job.old_.dtype = DType::F32;
    job.old_.data = a.data();
    job.new_.dtype = DType::F32;
    job.new_.data = b.data();
    job.tau_given = true;
    if (t.c_new) job.c_new = t.c_new + i0;
    if (t.c_old) job.c_old = t.c_old + i0;
    job.out_dtype = t.out_dtype;
    job.out = out_rows;
    job.stats = rows_from(t.stats, i0);
    job.tensor_name = t.name;
    job.row_offset = i0;
    run_edit(job, params, ro);
  };
  if (!t.transposed) {
    const int64_t per = std::max<int64_t>(1, int64_t(block_bytes / std::max<size_t>(1, std::max(row_in, row_out))));
    for (int64_t i0 = 0; i0 < m; i0 += per) {
      ctx.check_cancel(t.name);
      const int64_t i1 = std::min(m, i0 + per);
      const size_t nr = size_t(i1 - i0);
      const void* base_rows = wb.open(t.base, uint64_t(i0) * row_in, nr * row_in, fb[0], ctx.watch);
      std::vector<char> sink;
      void* out = nullptr;
      if (t.out_fd >= 0) out = w.acquire(nr * row_out);
      else { sink.resize(nr * row_out); out = sink.data(); }
      edit_rows(i0, i1, base_rows, out);
      wb.verify(ctx.watch);
      if (t.out_fd >= 0) w.submit(t.out_fd, nr * row_out, t.out_offset + uint64_t(i0) * row_out, t.name);
      ctx.add(double(nr * row_in));
    }
    return;
  }
  // Transposed: neuron i is stored column i, so the whole tensor is edited at once (as lib/ did).
  ctx.check_cancel(t.name);
  const size_t count = size_t(m) * size_t(n);
  const char* stored = static_cast<const char*>(wb.open(t.base, 0, count * bs, fb[0], ctx.watch));
  std::vector<char> base_rows(count * bs), out_rows(count * outs);
  auto transpose = [](const char* src, char* dst, int64_t r, int64_t c, size_t es) {  // src [r, c] -> dst [c, r]
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) std::memcpy(dst + (size_t(j) * size_t(r) + size_t(i)) * es, src + (size_t(i) * size_t(c) + size_t(j)) * es, es);
  };
  transpose(stored, base_rows.data(), n, m, bs);  // stored [n, m] -> neuron rows [m, n]
  edit_rows(0, m, base_rows.data(), out_rows.data());
  wb.verify(ctx.watch);
  if (t.out_fd >= 0) {
    char* out = w.acquire(count * outs);
    transpose(out_rows.data(), out, m, n, outs);  // neuron rows [m, n] -> stored [n, m]
    w.submit(t.out_fd, count * outs, t.out_offset, t.name);
  }
  ctx.add(double(count * bs));
}

void run_copy_task(const StreamTask& t, size_t block_bytes, Ctx& ctx, Writer& w) {
  const size_t chunk = std::max<size_t>(block_bytes, 1 << 16);
  uint64_t off = 0;
#ifdef __linux__
  // In-kernel copy first (no user-space buffer; a reflink on file systems that have them).
  static const bool kNoCfr = std::getenv("GEOEDIT_NO_COPY_FILE_RANGE") != nullptr;
  while (t.out_fd >= 0 && !kNoCfr && off < t.copy_bytes) {
    ctx.check_cancel(t.name);
    loff_t in_off = loff_t(t.base.offset + off), out_off = loff_t(t.out_offset + off);
    const size_t len = size_t(std::min<uint64_t>(chunk, t.copy_bytes - off));
    ctx.watch.check(t.base, t.base.offset + off + len);
    const ssize_t r = ::copy_file_range(t.base.fd, &in_off, t.out_fd, &out_off, len, 0);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      break;  // EXDEV, ENOSYS, EINVAL, EOPNOTSUPP, a short file…: the pread/pwrite path below
    }
    off += uint64_t(r);
    ctx.add(double(r));
  }
#endif
  for (; off < t.copy_bytes; off += chunk) {
    ctx.check_cancel(t.name);
    const size_t len = size_t(std::min<uint64_t>(chunk, t.copy_bytes - off));
    if (t.out_fd >= 0) {
      char* p = w.acquire(len);
      ctx.watch.check(t.base, t.base.offset + off + len);
      pread_all(t.base, p, len, t.base.offset + off);
      w.submit(t.out_fd, len, t.out_offset + off, t.name);
    }
    ctx.add(double(len));
  }
  if (t.copy_bytes) ctx.watch.check(t.base, t.base.offset + t.copy_bytes);  // a rewrite during the last chunk
}

void run_convert_task(const StreamTask& t, size_t block_bytes, Ctx& ctx, Writer& w, AlignedBuf& in) {
  const size_t is = dtype_size(t.base.dtype), os = dtype_size(t.out_dtype);
  const uint64_t count = uint64_t(t.rows) * uint64_t(t.cols);
  const uint64_t per = std::max<uint64_t>(1, block_bytes / std::max(is, os));
  for (uint64_t e0 = 0; e0 < count; e0 += per) {
    ctx.check_cancel(t.name);
    const size_t n = size_t(std::min(per, count - e0));
    char* src = in.get(n * is);
    ctx.watch.check(t.base, t.base.offset + (e0 + n) * is);
    pread_all(t.base, src, n * is, t.base.offset + e0 * is);
    if (t.out_fd >= 0) {
      char* dst = w.acquire(n * os);
      convert(t.base.dtype, src, t.out_dtype, dst, n);
      w.submit(t.out_fd, n * os, t.out_offset + e0 * os, t.name);
    }
    ctx.add(double(n * is));
  }
}

}  // namespace

void run_stream(const std::vector<StreamTask>& tasks, const Params& params, const RunOptions& ro, size_t block_bytes,
                const StreamControl& ctl, const StreamBackend& backend) {
  validate_params(params);
  // Edit blocks: larger on the GPU by default (a block is split into device chunks there).
  // Copy and convert blocks stay at the CPU size: they never reach the device.
  const size_t edit_block = block_bytes ? block_bytes : backend.cuda ? kDefaultCudaBlockBytes : kDefaultBlockBytes;
  if (block_bytes == 0) block_bytes = kDefaultBlockBytes;
  bus::install();
  Ctx ctx(ctl);
  Writer w;
  AlignedBuf fb[5];
  ReadAhead ahead(backend.cuda);
  for (size_t k = 0; k < tasks.size(); ++k) {
    const StreamTask& t = tasks[k];
    const StreamTask* next = k + 1 < tasks.size() && tasks[k + 1].kind == StreamTask::Edit ? &tasks[k + 1] : nullptr;
    if (ctl.task_index) {
      const double v = double(k);
      __atomic_store(ctl.task_index, &v, __ATOMIC_RELAXED);
    }
    try {
      switch (t.kind) {
        case StreamTask::Edit: run_edit_task(t, next, params, ro, edit_block, backend, ctx, w, fb, ahead); break;
        case StreamTask::Copy: run_copy_task(t, block_bytes, ctx, w); break;
        case StreamTask::Convert: run_convert_task(t, block_bytes, ctx, w, fb[0]); break;
        case StreamTask::LoraMerge: run_lora_task(t, params, ro, edit_block, ctx, w, fb); break;
      }
    } catch (const Error& e) {
      with_name(t, e);
    }
  }
  w.drain();
}

}  // namespace geoedit
