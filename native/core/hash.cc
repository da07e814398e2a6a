// SHA-256 through the platform's OpenSSL (see hash.h).
#include "hash.h"

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include "busguard.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "geoedit/geoedit.h"

namespace geoedit {

namespace {

// The few EVP entry points used; their signatures are the same in OpenSSL 1.1, 3.x and BoringSSL.
struct Evp {
  const void* (*sha256)() = nullptr;
  void* (*ctx_new)() = nullptr;
  void (*ctx_free)(void*) = nullptr;
  int (*init)(void*, const void*, void*) = nullptr;
  int (*update)(void*, const void*, size_t) = nullptr;
  int (*final)(void*, unsigned char*, unsigned int*) = nullptr;
  std::string why, provider;
};

template <class F>
bool find(void* h, const char* name, F* f) {
  *f = reinterpret_cast<F>(dlsym(h, name));
  return *f != nullptr;
}

bool load(void* h, Evp* e) {
  return find(h, "EVP_sha256", &e->sha256) && find(h, "EVP_MD_CTX_new", &e->ctx_new) && find(h, "EVP_MD_CTX_free", &e->ctx_free) &&
         find(h, "EVP_DigestInit_ex", &e->init) && find(h, "EVP_DigestUpdate", &e->update) && find(h, "EVP_DigestFinal_ex", &e->final);
}

const Evp& evp() {
  static const Evp e = [] {
    Evp r;
    // 1. Already in the process (Node exports its OpenSSL to addons; a program linked with libcrypto).
    bool ok = load(RTLD_DEFAULT, &r);
    void* h = RTLD_DEFAULT;
    // 2. The system's libcrypto.
    if (!ok) {
      for (const char* lib : {"libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.dylib", "libcrypto.so"}) {
        h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
        if (h && (ok = load(h, &r))) break;
      }
    }
    if (!ok) {
      r = Evp();
      r.why = "no OpenSSL EVP SHA-256 in this process and no system libcrypto";
      return r;
    }
    const char* (*version)(int) = nullptr;
    if (find(h, "OpenSSL_version", &version) && version) r.provider = version(0);
    else r.provider = "OpenSSL (EVP)";
    return r;
  }();
  return e;
}

// hash_files reads each file through mapped windows of this size (hashed in place, no copy into a
// buffer: on the development VM the pread copy was ~8 % of a default edit's CPU time). The window's
// page tables are filled in one call (MAP_POPULATE) rather than fault by fault. A file that shrinks
// while a window is mapped raises SIGBUS in the hashing thread: the guard (busguard.h GuardedMap)
// maps zeros over the rest of the window and the window is then refused (ERR_IO). A window that
// cannot be mapped is read with pread (hash_pread).
constexpr size_t kMapWindow = size_t(16) << 20;

// [off, off + len) of f into h through a guarded mapping; false where it cannot be mapped.
bool hash_mapped(const HashFile& f, uint64_t off, size_t len, Sha256& h) {
  bus::GuardedMap w;
  const char* p = w.map(f.fd, off, len, true, false);
  if (!p) return false;
  h.update(p, len);
  if (w.faulted())
    throw Error(ErrorCode::Io, f.path + ": the file shrank while being hashed (truncated by another process?)", file_details(f.path));
  return true;
}

bool cancelled(const double* cancel) {
  if (!cancel) return false;
  double c;
  __atomic_load(cancel, &c, __ATOMIC_RELAXED);
  return c != 0;
}

// [off, end) of fd into h with pread, 1 MiB pieces (they stay in L2 between the read and the hash)
// into buf (allocated on first use). Error(Io) naming path on a failed or short read; Error(Aborted)
// when *cancel becomes non-zero. The bytes hashed: end - off.
constexpr size_t kPiece = size_t(1) << 20;
uint64_t hash_pread(int fd, uint64_t off, uint64_t end, Sha256& h, const std::string& path, const double* cancel,
                    std::unique_ptr<char[]>& buf) {
  const uint64_t from = off;
  if (off < end && !buf) buf.reset(new char[kPiece]);
  while (off < end) {
    if (cancelled(cancel)) throw Error(ErrorCode::Aborted, "aborted while hashing " + path, file_details(path));
    const size_t want = size_t(std::min<uint64_t>(kPiece, end - off));
    const ssize_t r = ::pread(fd, buf.get(), want, off_t(off));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::Io, path + ": read failed while hashing: " + std::strerror(errno), file_details(path));
    }
    if (r == 0) throw Error(ErrorCode::Io, path + ": unexpected end of file while hashing (was it truncated?)", file_details(path));
    h.update(buf.get(), size_t(r));
    off += uint64_t(r);
  }
  return off - from;
}

}  // namespace

const std::string& sha256_unavailable_reason() { return evp().why; }
const std::string& sha256_provider() { return evp().provider; }

Sha256::Sha256() {
  const Evp& e = evp();
  if (!e.why.empty()) throw Error(ErrorCode::Internal, "SHA-256 unavailable: " + e.why);
  ctx_ = e.ctx_new();
  if (!ctx_ || e.init(ctx_, e.sha256(), nullptr) != 1) throw Error(ErrorCode::Internal, "SHA-256: EVP_DigestInit_ex failed");
}

Sha256::~Sha256() {
  if (ctx_) evp().ctx_free(ctx_);
}

void Sha256::update(const void* p, size_t n) {
  if (n && evp().update(ctx_, p, n) != 1) throw Error(ErrorCode::Internal, "SHA-256: EVP_DigestUpdate failed");
}

std::string Sha256::hex() {
  unsigned char d[64];
  unsigned int len = 0;
  if (evp().final(ctx_, d, &len) != 1 || len != 32) throw Error(ErrorCode::Internal, "SHA-256: EVP_DigestFinal_ex failed");
  static const char* k = "0123456789abcdef";
  std::string s(64, '0');
  for (int i = 0; i < 32; ++i) {
    s[size_t(2 * i)] = k[d[i] >> 4];
    s[size_t(2 * i + 1)] = k[d[i] & 15];
  }
  return s;
}

std::vector<HashResult> hash_files(const std::vector<HashFile>& files, int threads, const double* cancel) {
  std::vector<HashResult> out(files.size());
  if (files.empty()) return out;
  if (!sha256_unavailable_reason().empty()) throw Error(ErrorCode::Internal, "SHA-256 unavailable: " + sha256_unavailable_reason());
  // Larger files first, so the longest stream starts at once.
  std::vector<size_t> order(files.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return files[a].size > files[b].size; });
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  const size_t nt = std::min(files.size(), size_t(threads));
  std::mutex m;
  size_t next = 0;
  bool failed = false;
  size_t err_index = 0;
  std::unique_ptr<Error> err;
  auto worker = [&]() {
    std::unique_ptr<char[]> buf;
    for (;;) {
      size_t i;
      {
        std::lock_guard<std::mutex> g(m);
        if (failed || next == order.size()) return;
        i = order[next++];
      }
      const HashFile& f = files[i];
      try {
        const auto t0 = std::chrono::steady_clock::now();
        Sha256 h;
        // Shorter than the size asked for (it shrank since the caller's stat): the pread path's error, before any map.
        struct stat st;
        const bool regular = ::fstat(f.fd, &st) == 0 && S_ISREG(st.st_mode);
        if (regular && uint64_t(st.st_size) < f.size)
          throw Error(ErrorCode::Io, f.path + ": unexpected end of file while hashing (was it truncated?)", file_details(f.path));
        for (uint64_t off = 0; off < f.size;) {
          if (cancelled(cancel)) throw Error(ErrorCode::Aborted, "aborted while hashing " + f.path, file_details(f.path));
          // A window mapped (the page-cache pages hashed in place: no copy into a buffer), else pread.
          const size_t win = size_t(std::min<uint64_t>(kMapWindow, f.size - off));
          if (!(regular && hash_mapped(f, off, win, h))) hash_pread(f.fd, off, off + win, h, f.path, cancel, buf);
          off += win;
        }
        out[i].sha256 = h.hex();
        out[i].seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      } catch (const Error& e) {
        std::lock_guard<std::mutex> g(m);
        // Report the first file (in input order) that failed, whatever the thread timing.
        if (!failed || i < err_index) { err.reset(new Error(e)); err_index = i; }
        failed = true;
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < nt; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (err) throw *err;
  return out;
}

OrderedHash::OrderedHash() : h_(new Sha256()) {}

uint64_t OrderedHash::ticket() {
  std::lock_guard<std::mutex> g(m_);
  return issued_++;
}

bool OrderedHash::feed(uint64_t t, uint64_t off, const char* p, size_t n, size_t count, uint64_t stride) {
  std::unique_lock<std::mutex> l(m_);
  cv_.wait(l, [&] { return served_ == t; });
  // This ticket's turn: until served_ moves on, no other feed, skip or finish touches the digest or
  // the frontier, so they are hashed without the lock (ticket(), taken by the writers issuing the next
  // blocks, never waits for a SHA-256 update).
  bool all = !failed_ && !finished_;
  uint64_t frontier = frontier_;
  l.unlock();
  if (on_feed_unlocked) on_feed_unlocked();
  bool failed = false;
  uint64_t hashed = 0;
  for (size_t k = 0; all && k < count; ++k) {
    const uint64_t at = off + uint64_t(k) * stride;
    if (at != frontier) { all = false; break; }
    try {
      h_->update(p + k * n, n);
    } catch (...) {
      failed = true;
      all = false;
      break;
    }
    frontier += n;
    hashed += n;
  }
  l.lock();
  frontier_ = frontier;
  from_memory_ += hashed;
  if (failed) failed_ = true;
  ++served_;
  l.unlock();
  cv_.notify_all();
  return all;
}

void OrderedHash::skip(uint64_t t) {
  std::unique_lock<std::mutex> l(m_);
  cv_.wait(l, [&] { return served_ == t; });
  ++served_;
  l.unlock();
  cv_.notify_all();
}

OrderedHash::Result OrderedHash::finish(int fd, uint64_t size, const std::string& path, const double* cancel) {
  std::unique_lock<std::mutex> l(m_);
  if (finished_) throw Error(ErrorCode::Internal, "OrderedHash::finish called twice for " + path, file_details(path));
  // Every write issued must have reached the hash (fed, or skipped when abandoned): a write still
  // outstanding may change bytes below the frontier or past it after they are read back.
  if (served_ != issued_)
    throw Error(ErrorCode::Internal,
                path + ": the output hash was finished with " + std::to_string(issued_ - served_) + " of its " + std::to_string(issued_) +
                    " writes not fed yet (an internal error: its digest would not be the file's)",
                file_details(path));
  finished_ = true;
  Result r;
  uint64_t from = frontier_;
  if (failed_ || from > size) {  // start over from the file
    h_.reset(new Sha256());
    from = 0;
    from_memory_ = 0;
  }
  r.from_memory = from_memory_;
  // Every ticket served and finished_ set: a later feed leaves the digest alone, so the rest of the
  // file is read into it unlocked.
  l.unlock();
  std::unique_ptr<char[]> buf;
  r.reread = hash_pread(fd, from, size, *h_, path, cancel, buf);
  r.sha256 = h_->hex();
  return r;
}

}  // namespace geoedit
