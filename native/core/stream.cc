// The checkpoint data path (see stream.h).
#include "stream.h"

#include "busguard.h"
#include "directwrite.h"
#include "pool.h"
#include "kernels.h"
#include "writebehind.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
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

// ---- Inputs that change under the edit (issue 14 class 6a): core/busguard.h ------------------------

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
    // Mapped (read-ahead: the pool's threads read the block front to back), else read: a misaligned
    // tensor, GEOEDIT_STREAM_IO=pread, or a file that cannot be mapped (bus::GuardedMap::map).
    const char* m = mode == 1 || s.offset % dtype_size(s.dtype) != 0 ? nullptr : map_.map(s.fd, abs, len, false, true);
    if (m) return m;
    char* p = fallback.get(len);
    pread_all(s, p, len, abs);
    return p;
  }
  // After the block's work: ERR_IO if a read of the mapping faulted (the file shrank under it).
  // And ERR_IO if the file's size or mtime changed meanwhile.
  void verify(FileWatch& watch) const {
    if (map_.faulted())
      throw Error(ErrorCode::Io, src_->file + ": the file shrank while being read (truncated by another process?)",
                  file_details(src_->file));
    if (src_) watch.check(*src_, end_);
  }
  void release() {
    src_ = nullptr;
    map_.release();
  }

 private:
  bus::GuardedMap map_;
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

// ---- Write-behind and direct writes (issue 17): core/writebehind.h, core/directwrite.h -------------

// Two output buffers; the pwrite of one overlaps the compute of the next. Each write is fed to the
// task's OrderedHash (in submission order, whichever thread writes it); its aligned middle goes to
// the file through O_DIRECT where it can (directwrite.h: each block sits in its buffer at the file
// offset's remainder modulo DirectWrites::kAlign, so memory and file line up), the rest through the
// page cache and the write-behind.
struct Writer {
  AlignedBuf buf[2];
  size_t shift[2] = {0, 0};  // where the block starts in buf[k]: its file offset % kAlign
  std::future<void> pending[2];
  int next = 0;
  WriteBehind behind;
  DirectWrites direct;
  // A buffer for n bytes to be written at file offset `off` (the offset of the submit that follows).
  char* acquire(size_t n, uint64_t off) {
    if (pending[next].valid()) pending[next].get();
    shift[next] = size_t(off % DirectWrites::kAlign);
    return buf[next].get(n + shift[next]) + shift[next];
  }
  void submit(int fd, size_t n, uint64_t off, const std::string& name, OrderedHash* h) { submit_strided(fd, 1, n, off, 0, name, h); }
  // `count` pieces of `piece` bytes, packed in the buffer, to file offsets off + k * file_stride
  // (a block of columns: one piece per stored row; always buffered).
  // A small block (a tiny tensor) is written here and now: a thread per write would cost more than
  // the write (a model of 200,000 tiny tensors started 200,000 threads).
  static constexpr size_t kInlineWriteBytes = size_t(1) << 18;
  void submit_strided(int fd, size_t count, size_t piece, uint64_t off, uint64_t file_stride, const std::string& name, OrderedHash* h) {
    const char* p = buf[next].p + shift[next];
    const bool contiguous = count == 1 || file_stride == piece;
    const int dfd = contiguous && count * piece > kInlineWriteBytes ? direct.fd_for(fd) : -1;
    if (count * piece <= kInlineWriteBytes) {
      if (pending[next].valid()) pending[next].get();
      const uint64_t ticket = h ? h->ticket() : 0;
      write_block(fd, -1, p, count, piece, off, file_stride, name, h, ticket, &behind, &direct);
      next ^= 1;
      return;
    }
    const uint64_t ticket = h ? h->ticket() : 0;
    WriteBehind* wb = &behind;
    DirectWrites* dw = &direct;
    try {
      pending[next] = std::async(std::launch::async, [=] { write_block(fd, dfd, p, count, piece, off, file_stride, name, h, ticket, wb, dw); });
    } catch (...) {
      if (h) h->skip(ticket);  // no thread: later tickets must not wait for this one
      throw;
    }
    next ^= 1;
  }
  static void write_block(int fd, int dfd, const char* p, size_t count, size_t piece, uint64_t off, uint64_t file_stride,
                          const std::string& name, OrderedHash* h, uint64_t ticket, WriteBehind* wb, DirectWrites* dw) {
    // The hash first (its turn comes in submission order), then the write. A block the hash could not
    // take (out of file order) is read back by its finish(): written buffered, so that read finds it
    // in the page cache rather than on the disk.
    const bool hashed = h && h->feed(ticket, off, p, piece, count, file_stride);
    try {
      if (count == 1 || file_stride == piece) {
        dw->write(fd, h && !hashed ? -1 : dfd, p, count * piece, off, [&](uint64_t at, uint64_t n) { wb->written(fd, at, n, hashed, name); });
      } else {
        for (size_t k = 0; k < count; ++k) pwrite_all(fd, p + k * piece, piece, off + k * file_stride);
      }
    } catch (const Error& e) {
      if (!e.details().tensor.empty()) throw;  // the write-back's: names the tensor of its range
      ErrorDetails d = e.details();
      d.tensor = name;
      throw Error(e.code(), std::string(e.what()) + " (tensor '" + name + "')", d);
    }
  }
  void drain() {
    for (auto& f : pending)
      if (f.valid()) f.get();
    behind.drain();
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
    if (!on_ || r1 <= r0 || t.layout != StreamTask::RowsLayout) return;  // columns blocks are strided
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

// Preservation: whole GEMM groups (the bytes do not depend on the caller's blocking): rows (neurons)
// per block rounded up to a multiple of the projection's group (kPreserveGroupRows on the CPU: run_edit's
// groups then fall on the same rows as in one unsplit call; kPreserveCudaBlockRows on the GPU), counted
// from the tensor's first neuron.
int64_t preserve_block_rows(const StreamTask& t, int64_t per_block, bool cuda) {
  if (!t.preserve) return per_block;
  const int64_t unit = cuda ? kPreserveCudaBlockRows : kPreserveGroupRows;
  return std::max<int64_t>(1, (per_block + unit - 1) / unit) * unit;
}

// The bias of an augmented layer (SPEC §3 step 0: [a_i, a^β_i]·P), read whole ([rows] elements,
// element k with neuron k in either layout); attach() gives a block of neurons starting at k0 its
// slice and points the job at the operator, the energy sums and the preserved bias outputs.
struct BiasRows {
  std::vector<char> raw[3];
  PreserveBias bias;
  bool aug = false;
  explicit BiasRows(const StreamTask& t) : aug(t.preserve && t.preserve->augmented()) {
    if (!aug) return;
    const StreamSrc* src[3] = {&t.bias_base, &t.bias_old, &t.bias_new};
    View* dst[3] = {&bias.base, &bias.old_, &bias.new_};
    for (int q = 0; q < 3; ++q) {
      raw[q].resize(size_t(t.rows) * dtype_size(src[q]->dtype));
      pread_all(*src[q], raw[q].data(), raw[q].size(), src[q]->offset);
      dst[q]->dtype = src[q]->dtype;
    }
  }
  void attach(const StreamTask& t, int64_t k0, EditJob& job, PreserveBias& blk) const {
    if (!t.preserve) return;
    job.preserve = t.preserve;
    job.preserve_stats = t.preserve_stats;
    if (!aug) return;
    blk = bias;
    for (int q = 0; q < 3; ++q) {
      View* v = q == 0 ? &blk.base : q == 1 ? &blk.old_ : &blk.new_;
      v->data = raw[q].data() + size_t(k0) * dtype_size(v->dtype);
    }
    if (t.bias_tau_old_out) blk.tau_old_out = t.bias_tau_old_out + k0;
    if (t.bias_tau_new_out) blk.tau_new_out = t.bias_tau_new_out + k0;
    job.preserve_bias = &blk;
  }
};

void run_edit_task(const StreamTask& t, const StreamTask* next, const Params& params, const RunOptions& ro,
                   size_t block_bytes, const StreamBackend& be, Ctx& ctx, Writer& w, AlignedBuf fb[5], ReadAhead& ahead) {
  const int64_t cols = t.cols;
  const size_t bs = dtype_size(t.base.dtype), os = dtype_size(t.old_.dtype), ns = dtype_size(t.new_.dtype);
  const size_t outs = dtype_size(t.out_dtype);
  const bool has_imp = t.imp_old.fd >= 0;
  const int64_t per_block = preserve_block_rows(t, rows_per_block(t, block_bytes), be.cuda);
  const bool tau_mem = t.tau_old_mem != nullptr;
  const BiasRows bias(t);
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
    bias.attach(t, r0, job, blk_bias);
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
    if (t.out_fd >= 0) out = w.acquire(n * outs, t.out_offset + uint64_t(r0) * cols * outs);
    job.out = out;
    job.stats = rows_from(t.stats, r0);
    job.tensor_name = t.name;
    job.row_offset = r0;
    // The CUDA kernels take weights, not task vectors: in-memory-tau blocks (a preserved bias) run on
    // the CPU core; preserved blocks go to run_edit_cuda (the projection with cuBLAS when usable).
    if (be.cuda && !job.tau_given) run_edit_cuda(job, params, be.cuda_opts);
    else run_edit(job, params, ro);
    for (const Window* w : {&wb, &wo, &wn, &wio, &win}) w->verify(ctx.watch);
    if (out) w.submit(t.out_fd, n * outs, t.out_offset + uint64_t(r0) * cols * outs, t.name, t.out_hash);
    ctx.add(double(n * (bs + os + ns)));
  }
}

// ---- columns layouts ----

// dst[c * dst_ld + r] = src[r * src_ld + c] for r < R, c < C (elements of es bytes). Strides are
// often powers of two (4096 columns...), so the lines of a naive tile all fall into one cache set
// and evict each other on every element. Instead: a chunk of RB source rows x CB columns is copied
// row by row (contiguous) into a small stage whose stride is not a power of two, then each of its
// columns is written as RB contiguous elements (one full 64-byte line) of a destination row.
template <typename T>
void transpose_t(const char* src, size_t src_ld, int64_t R, int64_t C, char* dst, size_t dst_ld) {
  const T* s = reinterpret_cast<const T*>(src);
  T* d = reinterpret_cast<T*>(dst);
  constexpr int64_t RB = 64 / int64_t(sizeof(T)), CB = 256, SLD = CB + 8;
  thread_local std::vector<T> stage_v;
  if (stage_v.size() < size_t(RB * SLD)) stage_v.resize(size_t(RB * SLD));
  T* stage = stage_v.data();
  for (int64_t r0 = 0; r0 < R; r0 += RB) {
    const int64_t rb = std::min(RB, R - r0);
    for (int64_t c0 = 0; c0 < C; c0 += CB) {
      const int64_t cb = std::min(CB, C - c0);
      for (int64_t i = 0; i < rb; ++i) std::memcpy(stage + i * SLD, s + size_t(r0 + i) * src_ld + size_t(c0), size_t(cb) * sizeof(T));
      for (int64_t c = 0; c < cb; ++c) {
        T* drow = d + size_t(c0 + c) * dst_ld + size_t(r0);
        for (int64_t i = 0; i < rb; ++i) drow[i] = stage[i * SLD + c];
      }
    }
  }
}

void transpose(size_t es, const char* src, size_t src_ld, int64_t R, int64_t C, char* dst, size_t dst_ld) {
  switch (es) {
    case 2: transpose_t<uint16_t>(src, src_ld, R, C, dst, dst_ld); return;
    case 4: transpose_t<uint32_t>(src, src_ld, R, C, dst, dst_ld); return;
    case 8: transpose_t<uint64_t>(src, src_ld, R, C, dst, dst_ld); return;
    default:
      for (int64_t r = 0; r < R; ++r)
        for (int64_t c = 0; c < C; ++c) std::memcpy(dst + (size_t(c) * dst_ld + size_t(r)) * es, src + (size_t(r) * src_ld + size_t(c)) * es, es);
  }
}

// transpose() on the shared pool, in chunks of 64 source rows (each chunk its own destination columns).
void ptranspose(int threads, size_t es, const char* src, size_t src_ld, int64_t R, int64_t C, char* dst, size_t dst_ld) {
  if (R * C < (int64_t(1) << 16)) return transpose(es, src, src_ld, R, C, dst, dst_ld);
  parallel_for(R, 64, threads, [&](int64_t b, int64_t e) {
    transpose(es, src + size_t(b) * src_ld * es, src_ld, e - b, C, dst + size_t(b) * es, dst_ld);
  });
}

// Columns [c0, c0 + w) of the stored matrix [in, out] at byte `rel` of s, as a row-major tile
// [w, in] (one neuron per row) in s's dtype. The matrix is read in bands of whole stored rows of
// about band_bytes (mapped, or pread piece by piece when the tensor is misaligned or
// GEOEDIT_STREAM_IO=pread): memory stays at one band and one tile, whatever the tensor's size.
void gather_columns(const StreamSrc& s, uint64_t rel, int64_t in, int64_t out, int64_t c0, int64_t w, size_t band_bytes,
                    char* tile, Window& win, AlignedBuf& stage, int threads, FileWatch& watch) {
  const size_t es = dtype_size(s.dtype);
  const size_t row_bytes = size_t(out) * es;
  static const bool kPread = [] {
    const char* e = std::getenv("GEOEDIT_STREAM_IO");
    return e && std::strcmp(e, "pread") == 0;
  }();
  if (kPread || s.offset % es != 0) {
    watch.check(s, s.offset + rel + uint64_t(in) * row_bytes);
    // One pread per stored row (one for the whole block when it spans every column).
    const int64_t band = w == out ? in : std::max<int64_t>(1, int64_t(band_bytes / std::max<size_t>(1, size_t(w) * es)));
    for (int64_t r0 = 0; r0 < in; r0 += band) {
      const int64_t r1 = std::min(in, r0 + band);
      char* p = stage.get(size_t(r1 - r0) * size_t(w) * es);
      if (w == out) pread_all(s, p, size_t(r1 - r0) * row_bytes, s.offset + rel + uint64_t(r0) * row_bytes);
      else
        for (int64_t r = r0; r < r1; ++r)
          pread_all(s, p + size_t(r - r0) * size_t(w) * es, size_t(w) * es, s.offset + rel + uint64_t(r) * row_bytes + uint64_t(c0) * es);
      ptranspose(threads, es, p, size_t(w), r1 - r0, w, tile + size_t(r0) * es, size_t(in));
    }
    return;
  }
  const int64_t band = std::max<int64_t>(1, int64_t(band_bytes / std::max<size_t>(1, row_bytes)));
  for (int64_t r0 = 0; r0 < in; r0 += band) {
    const int64_t r1 = std::min(in, r0 + band);
    const char* p = win.open(s, rel + uint64_t(r0) * row_bytes, size_t(r1 - r0) * row_bytes, stage, watch);
    ptranspose(threads, es, p + size_t(c0) * es, size_t(out), r1 - r0, w, tile + size_t(r0) * es, size_t(in));
    win.verify(watch);  // ERR_IO if the file shrank or changed under the band (issue 14 class 6)
  }
  win.release();
}

// The core names positions as "row R, column C" of the tile: neuron R, element C. Said as a user
// of a columns tensor looks it up: the neuron, and the stored index [element, column] (with the
// expert first for [E, in, out]); details.row / column index the stored matrix [E·in, out].
[[noreturn]] void rethrow_at_columns(const StreamTask& t, const Error& e, int64_t out) {
  const ErrorDetails& d = e.details();
  if (d.row < 0) throw e;
  const int64_t g = d.row / out, j = d.row % out;
  std::string m = e.what();
  std::ostringstream pos;
  pos << "neuron " << d.row << " (column " << j;
  if (t.groups > 1) pos << " of expert " << g;
  pos << " of the stored " << (t.groups > 1 ? "[E, in, out]" : "[in, out]") << " tensor";
  if (d.column >= 0) {
    pos << "), element " << d.column << " (stored index [";
    if (t.groups > 1) pos << g << ", ";
    pos << d.column << ", " << j << "]";
  }
  pos << ")";
  const std::string rc = "row " + std::to_string(d.row) + (d.column >= 0 ? ", column " + std::to_string(d.column) : "");
  size_t at = m.find(rc);
  while (at != std::string::npos && at + rc.size() < m.size() && std::isdigit(static_cast<unsigned char>(m[at + rc.size()])))
    at = m.find(rc, at + 1);
  if (at != std::string::npos) m.replace(at, rc.size(), pos.str());
  else m += " (at " + pos.str() + ")";
  ErrorDetails nd = d;
  nd.row = d.column >= 0 ? g * t.cols + d.column : -1;
  nd.column = j;
  throw Error(e.code(), m, nd);
}

// A columns task (see StreamTask::Layout): blocks of whole columns, each gathered into a tile
// [w, in] per input, edited as w rows, scattered back into the writer's buffer as [in, w] and
// written as `in` strided pieces (one pwrite when the block spans every column).
void run_columns_task(const StreamTask& t, const Params& params, const RunOptions& ro, size_t block_bytes,
                      const StreamBackend& be, Ctx& ctx, Writer& w, AlignedBuf fb[5], AlignedBuf tiles[6]) {
  const int64_t in = t.cols, groups = std::max<int64_t>(1, t.groups);
  if (t.rows % groups != 0)
    throw Error(ErrorCode::InvalidArgument, "columns task: rows must be a multiple of groups", tensor_details(t.name));
  // A preserved bias is edited from memory as its own [1, m] rows task after its weight, never as columns.
  if (t.tau_old_mem || t.tau_new_mem)
    throw Error(ErrorCode::InvalidArgument, "columns task: task vectors from memory (a preserved bias) are a rows task", tensor_details(t.name));
  const int64_t out = t.rows / groups;
  const size_t outs = dtype_size(t.out_dtype);
  const bool has_imp = t.imp_old.fd >= 0;
  const StreamSrc* srcs[5] = {&t.base, &t.old_, &t.new_, &t.imp_old, &t.imp_new};
  View* views[5];
  // Preservation (SPEC §3 step 0): neuron k is column k, so the tile's rows are the neurons and the
  // projection runs on them as on a rows task. Preserved blocks are whole GEMM blocks counted from the
  // tensor's first neuron, as the rows task of the same neurons has them ([E, out, in] for [E, in, out]):
  // a block may then span stored matrices (one gathered and written piece per matrix), so every row,
  // energy sum and byte is the rows task's. The bias element of neuron k goes with it.
  int64_t per_block = preserve_block_rows(t, rows_per_block(t, block_bytes), be.cuda);
  if (!t.preserve) {
    per_block = std::min(out, per_block);
    // Whole 32-column tiles where the block does not span every column (the transposes' tile).
    if (per_block < out && per_block > 32) per_block -= per_block % 32;
  }
  const BiasRows bias(t);
  Window win;
  // The pieces [k0, k1) of the block [b0, b1) of neurons that lie in one stored matrix g = k0 / out.
  auto pieces = [out](int64_t b0, int64_t b1, const std::function<void(int64_t g, int64_t c0, int64_t w, int64_t at)>& f) {
    for (int64_t k0 = b0; k0 < b1;) {
      const int64_t g = k0 / out, k1 = std::min(b1, (g + 1) * out);
      f(g, k0 - g * out, k1 - k0, k0 - b0);
      k0 = k1;
    }
  };
  for (int64_t b0 = 0; b0 < t.rows;) {
    ctx.check_cancel(t.name);
    // Without preservation a block stays inside its matrix (blocks from each matrix's first column).
    int64_t nc = std::min(per_block, t.rows - b0);
    if (!t.preserve) nc = std::min(nc, (b0 / out + 1) * out - b0);
    EditJob job;
    views[0] = &job.base; views[1] = &job.old_; views[2] = &job.new_; views[3] = &job.imp_old; views[4] = &job.imp_new;
    for (int q = 0; q < (has_imp ? 5 : 3); ++q) {
      const StreamSrc& s = *srcs[q];
      const size_t es = dtype_size(s.dtype);
      char* tile = tiles[q].get(size_t(nc) * size_t(in) * es);
      pieces(b0, b0 + nc, [&](int64_t g, int64_t c0, int64_t wd, int64_t at) {
        gather_columns(s, uint64_t(g) * uint64_t(in) * uint64_t(out) * es, in, out, c0, wd, block_bytes,
                       tile + size_t(at) * size_t(in) * es, win, fb[q], ro.threads, ctx.watch);
      });
      views[q]->dtype = s.dtype;
      views[q]->data = tile;
    }
    job.rows = nc;
    job.cols = in;
    if (t.c_new) job.c_new = t.c_new + b0;
    if (t.c_old) job.c_old = t.c_old + b0;
    job.out_dtype = t.out_dtype;
    const size_t n = size_t(nc) * size_t(in);
    job.out = t.out_fd >= 0 ? tiles[5].get(n * outs) : nullptr;
    job.stats = rows_from(t.stats, b0);
    job.tensor_name = t.name;
    job.row_offset = b0;
    PreserveBias blk_bias;
    bias.attach(t, b0, job, blk_bias);
    try {
      if (be.cuda) run_edit_cuda(job, params, be.cuda_opts);
      else run_edit(job, params, ro);
    } catch (const Error& e) {
      rethrow_at_columns(t, e, out);
    }
    if (job.out) {
      pieces(b0, b0 + nc, [&](int64_t g, int64_t c0, int64_t wd, int64_t at) {
        const size_t pn = size_t(wd) * size_t(in);
        const uint64_t row_bytes = uint64_t(out) * outs;
        const uint64_t off = t.out_offset + uint64_t(g) * uint64_t(in) * row_bytes + uint64_t(c0) * outs;
        char* dst = w.acquire(pn * outs, off);
        ptranspose(ro.threads, outs, static_cast<const char*>(job.out) + size_t(at) * size_t(in) * outs, size_t(in), wd, in, dst, size_t(wd));
        if (wd == out) w.submit(t.out_fd, pn * outs, off, t.name, t.out_hash);
        else w.submit_strided(t.out_fd, size_t(in), size_t(wd) * outs, off, row_bytes, t.name, t.out_hash);
      });
    }
    ctx.add(double(n * (dtype_size(t.base.dtype) + dtype_size(t.old_.dtype) + dtype_size(t.new_.dtype))));
    b0 += nc;
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
        j.out = w.acquire(nr * row_out, t.out_offset + uint64_t(s0) * row_out);
      } else {
        sink.resize(nr * row_out);
        j.out = sink.data();
      }
      run_lora_merge(j, ro);
      wb.verify(ctx.watch);
      if (t.out_fd >= 0) w.submit(t.out_fd, nr * row_out, t.out_offset + uint64_t(s0) * row_out, t.name, t.out_hash);
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
      if (t.out_fd >= 0) out = w.acquire(nr * row_out, t.out_offset + uint64_t(i0) * row_out);
      else { sink.resize(nr * row_out); out = sink.data(); }
      edit_rows(i0, i1, base_rows, out);
      wb.verify(ctx.watch);
      if (t.out_fd >= 0) w.submit(t.out_fd, nr * row_out, t.out_offset + uint64_t(i0) * row_out, t.name, t.out_hash);
      ctx.add(double(nr * row_in));
    }
    return;
  }
  // Transposed: neuron i is stored column i, so the whole tensor is edited at once (as lib/ did).
  ctx.check_cancel(t.name);
  const size_t count = size_t(m) * size_t(n);
  const char* stored = static_cast<const char*>(wb.open(t.base, 0, count * bs, fb[0], ctx.watch));
  std::vector<char> base_rows(count * bs), out_rows(count * outs);
  ptranspose(ro.threads, bs, stored, size_t(m), n, m, base_rows.data(), size_t(n));  // stored [n, m] -> neuron rows [m, n]
  edit_rows(0, m, base_rows.data(), out_rows.data());
  wb.verify(ctx.watch);
  if (t.out_fd >= 0) {
    char* out = w.acquire(count * outs, t.out_offset);
    ptranspose(ro.threads, outs, out_rows.data(), size_t(n), m, n, out, size_t(m));  // neuron rows [m, n] -> stored [n, m]
    w.submit(t.out_fd, count * outs, t.out_offset, t.name, t.out_hash);
  }
  ctx.add(double(count * bs));
}

void run_copy_task(const StreamTask& t, size_t block_bytes, Ctx& ctx, Writer& w) {
  const size_t chunk = std::max<size_t>(block_bytes, 1 << 16);
  uint64_t off = 0;
#ifdef __linux__
  // In-kernel copy first (no user-space buffer; a reflink on file systems that have them), unless
  // the output is hashed as it is written (the bytes must pass through memory then).
  static const bool kNoCfr = std::getenv("GEOEDIT_NO_COPY_FILE_RANGE") != nullptr;
  while (t.out_fd >= 0 && !kNoCfr && !t.out_hash && off < t.copy_bytes) {
    ctx.check_cancel(t.name);
    loff_t in_off = loff_t(t.base.offset + off), out_off = loff_t(t.out_offset + off);
    const size_t len = size_t(std::min<uint64_t>(chunk, t.copy_bytes - off));
    ctx.watch.check(t.base, t.base.offset + off + len);
    const ssize_t r = ::copy_file_range(t.base.fd, &in_off, t.out_fd, &out_off, len, 0);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      break;  // EXDEV, ENOSYS, EINVAL, EOPNOTSUPP, a short file…: the pread/pwrite path below
    }
    w.behind.written(t.out_fd, t.out_offset + off, uint64_t(r), false, t.name);
    off += uint64_t(r);
    ctx.add(double(r));
  }
#endif
  for (; off < t.copy_bytes; off += chunk) {
    ctx.check_cancel(t.name);
    const size_t len = size_t(std::min<uint64_t>(chunk, t.copy_bytes - off));
    if (t.out_fd >= 0) {
      char* p = w.acquire(len, t.out_offset + off);
      ctx.watch.check(t.base, t.base.offset + off + len);
      pread_all(t.base, p, len, t.base.offset + off);
      w.submit(t.out_fd, len, t.out_offset + off, t.name, t.out_hash);
    }
    ctx.add(double(len));
  }
  if (t.copy_bytes) ctx.watch.check(t.base, t.base.offset + t.copy_bytes);  // a rewrite during the last chunk
}

// Whether a finite value of `from` can round to a non-finite one of `to` (f32 outputs are not checked:
// every input dtype widens to it; f16's largest value, 65504, is far inside bf16's range).
bool can_overflow(DType from, DType to) {
  return to != DType::F32 && from != to && !(from == DType::F16 && to == DType::BF16);
}

// SPEC §5 for a tensor that is converted, not edited (`outDtype` narrower than its input): a finite
// value that rounds to a non-finite one of the output dtype is ERR_NON_FINITE_OUTPUT naming the tensor
// and the element (flat index), unless the caller opts in (allowNonFiniteOutput / allowNonFinite).
// v: the block's n values as f32 (decoded once: the caller encodes the output from them).
void check_converted(const StreamTask& t, const float* v, size_t n, uint64_t e0) {
  const uint32_t lim = non_finite_bits(t.out_dtype);
  for (size_t j = 0; j < n; ++j) {
    const uint32_t b = abs_bits(v[j]);
    if (b < lim || b >= 0x7F800000u) continue;  // fits, or was not finite in the input already
    std::ostringstream m;
    m << "tensor '" << t.name << "' (converted, not edited): the value " << v[j] << " at element " << (e0 + j)
      << " overflows " << dtype_name(t.out_dtype) << "; choose a wider outDtype, exclude it from the conversion, or pass allowNonFiniteOutput to write it anyway";
    throw Error(ErrorCode::NonFiniteOutput, m.str(), tensor_details(t.name, int64_t(e0 + j), 0));
  }
}

void run_convert_task(const StreamTask& t, size_t block_bytes, Ctx& ctx, Writer& w, AlignedBuf& in, bool check_out) {
  const size_t is = dtype_size(t.base.dtype), os = dtype_size(t.out_dtype);
  const uint64_t count = uint64_t(t.rows) * uint64_t(t.cols);
  const uint64_t per = std::max<uint64_t>(1, block_bytes / std::max(is, os));
  std::vector<float> f32;
  check_out = check_out && can_overflow(t.base.dtype, t.out_dtype);
  const Kernels& K = kernels_for(active_simd());
  for (uint64_t e0 = 0; e0 < count; e0 += per) {
    ctx.check_cancel(t.name);
    const size_t n = size_t(std::min(per, count - e0));
    char* src = in.get(n * is);
    ctx.watch.check(t.base, t.base.offset + (e0 + n) * is);
    pread_all(t.base, src, n * is, t.base.offset + e0 * is);
    char* dst = t.out_fd >= 0 ? w.acquire(n * os, t.out_offset + e0 * os) : nullptr;
    if (check_out) {
      // Decoded to f32 once: checked, then encoded from the same values (convert() would decode again).
      const float* v = reinterpret_cast<const float*>(src);
      if (t.base.dtype != DType::F32) {
        f32.resize(n);
        K.decode(t.base.dtype, src, f32.data(), int64_t(n));
        v = f32.data();
      }
      check_converted(t, v, n, e0);
      if (dst) K.encode(v, t.out_dtype, dst, int64_t(n));
    } else if (dst) {
      convert(t.base.dtype, src, t.out_dtype, dst, n);
    }
    if (dst) w.submit(t.out_fd, n * os, t.out_offset + e0 * os, t.name, t.out_hash);
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
  AlignedBuf tiles[6];  // columns tasks: the five input tiles and the output tile
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
        case StreamTask::Edit:
          if (t.layout == StreamTask::ColumnsLayout) run_columns_task(t, params, ro, edit_block, backend, ctx, w, fb, tiles);
          else run_edit_task(t, next, params, ro, edit_block, backend, ctx, w, fb, ahead);
          break;
        case StreamTask::Copy: run_copy_task(t, block_bytes, ctx, w); break;
        case StreamTask::Convert: run_convert_task(t, block_bytes, ctx, w, fb[0], !params.allow_non_finite && !params.allow_non_finite_output); break;
        case StreamTask::LoraMerge: run_lora_task(t, params, ro, edit_block, ctx, w, fb); break;
      }
    } catch (const Error& e) {
      with_name(t, e);
    }
  }
  w.drain();
}

}  // namespace geoedit
