// O_DIRECT output writes (see directwrite.h).
#include "directwrite.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "geoedit/geoedit.h"

namespace geoedit {

namespace {
std::atomic<uint64_t> g_direct{0}, g_buffered{0}, g_refused{0};
}  // namespace

void pwrite_all(int fd, const char* src, size_t len, uint64_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t r = ::pwrite(fd, src + done, len - done, off_t(off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::Io, std::string("write failed: ") + std::strerror(errno));
    }
    if (r == 0) throw Error(ErrorCode::Io, "write failed: short write (0 bytes written; is the disk full?)");
    done += size_t(r);
  }
}

// Read at every stream call (a getenv or two), so that a process may switch it between jobs.
int DirectWrites::mode_from_env() {
  const char* t = std::getenv("GEOEDIT_TEST_DIRECT_WRITE");
  if (t && std::strcmp(t, "refuse-open") == 0) return RefuseOpen;
  if (t && std::strcmp(t, "refuse-write") == 0) return RefuseWrite;
  if (t && std::strcmp(t, "eio") == 0) return FailWrite;
  const char* e = std::getenv("GEOEDIT_DIRECT_WRITE");
  return e && std::strcmp(e, "0") == 0 ? Off : On;
}

DirectWrites::Stats DirectWrites::stats() {
  Stats s;
  s.direct = g_direct.load(std::memory_order_relaxed);
  s.buffered = g_buffered.load(std::memory_order_relaxed);
  s.refused = g_refused.load(std::memory_order_relaxed);
  return s;
}

DirectWrites::~DirectWrites() {
  for (const auto& kv : fds_)
    if (kv.second >= 0) ::close(kv.second);
}

int DirectWrites::fd_for(int fd) {
  if (mode_ == Off || fd < 0 || off_.load(std::memory_order_relaxed)) return -1;
  auto it = fds_.find(fd);
  if (it != fds_.end()) return it->second;
  int dfd = -1;
#if defined(__linux__) && defined(O_DIRECT)
  struct stat a;
  if (::fstat(fd, &a) == 0 && S_ISREG(a.st_mode)) {
    if (mode_ == RefuseOpen) {
      g_refused.fetch_add(1, std::memory_order_relaxed);
    } else {
      // A second open file description of the same file (the caller's stays buffered for the
      // unaligned pieces); checked to be the same inode.
      const std::string proc = "/proc/self/fd/" + std::to_string(fd);
      dfd = ::open(proc.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
      struct stat b;
      if (dfd >= 0 && (::fstat(dfd, &b) != 0 || b.st_dev != a.st_dev || b.st_ino != a.st_ino)) {
        ::close(dfd);
        dfd = -1;
      }
      if (dfd < 0) g_refused.fetch_add(1, std::memory_order_relaxed);
    }
  }
#endif
  fds_.emplace(fd, dfd);
  return dfd;
}

void DirectWrites::write(int fd, int dfd, const char* p, size_t len, uint64_t off, const std::function<void(uint64_t, uint64_t)>& buffered) {
  auto plain = [&](const char* q, size_t n, uint64_t at) {
    if (!n) return;
    pwrite_all(fd, q, n, at);
    g_buffered.fetch_add(n, std::memory_order_relaxed);
    buffered(at, n);
  };
  const uint64_t a = (off + kAlign - 1) / kAlign * kAlign, b = (off + len) / kAlign * kAlign;
  const bool lined_up = (reinterpret_cast<uintptr_t>(p) + (a - off)) % kAlign == 0;
  if (dfd < 0 || b <= a || b - a < kMinBytes || !lined_up || off_.load(std::memory_order_relaxed)) return plain(p, len, off);
  plain(p, size_t(a - off), off);  // the head: up to the first aligned offset
  uint64_t done = 0;
  while (a + done < b) {
    ssize_t r = -1;
    if (mode_ == RefuseWrite || mode_ == FailWrite) errno = mode_ == RefuseWrite ? EINVAL : EIO;
    else r = ::pwrite(dfd, p + (a - off) + done, size_t(b - a - done), off_t(a + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EINVAL) {  // refused: nothing written; this range and the rest buffered
      g_refused.fetch_add(1, std::memory_order_relaxed);
      off_.store(true, std::memory_order_relaxed);
      break;
    }
    if (r < 0) throw Error(ErrorCode::Io, std::string("write failed: ") + std::strerror(errno));
    if (r == 0) throw Error(ErrorCode::Io, "write failed: short write (0 bytes written; is the disk full?)");
    done += uint64_t(r);
    g_direct.fetch_add(uint64_t(r), std::memory_order_relaxed);
    if (done % kAlign) break;  // a short write off the alignment: the rest buffered
  }
  plain(p + (a - off) + done, size_t(b - a - done), a + done);  // what the direct writes left
  plain(p + (b - off), size_t(off + len - b), b);                // the tail
}

}  // namespace geoedit
