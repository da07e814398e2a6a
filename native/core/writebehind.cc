// Write-behind of the stream's outputs (see writebehind.h).
#include "writebehind.h"

#include <fcntl.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "geoedit/geoedit.h"

namespace geoedit {

namespace {
#ifdef SYNC_FILE_RANGE_WRITE
constexpr unsigned kKick = SYNC_FILE_RANGE_WRITE;
constexpr unsigned kWait = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
#else
constexpr unsigned kKick = 1, kWait = 2;
#endif
}  // namespace

uint64_t WriteBehind::window_from_env() {
  static const uint64_t w = [] {
    const char* e = std::getenv("GEOEDIT_WRITE_BEHIND");
    if (!e || !*e) return uint64_t(64) << 20;
    char* end = nullptr;
    const double mib = std::strtod(e, &end);
    return end && *end == 0 && mib > 0 ? uint64_t(mib * double(1 << 20)) : uint64_t(0);
  }();
  return w;
}

int WriteBehind::fake_errno_from_env() {
  static const int f = [] {
    const char* e = std::getenv("GEOEDIT_TEST_SYNC_FILE_RANGE");
    if (!e) return 0;
    if (std::strcmp(e, "unsupported") == 0) return ENOSYS;
    if (std::strcmp(e, "eio") == 0) return EIO;
    return 0;
  }();
  return f;
}

void WriteBehind::written(int fd, uint64_t off, uint64_t len, bool drop, const std::string& name) {
  if (!window_ || !len || off_.load(std::memory_order_relaxed)) return;
  Range a, b;  // to hand to the kernel, in this order
  {
    std::lock_guard<std::mutex> g(m_);
    if (pending_.len && pending_.fd == fd && pending_.off + pending_.len == off && pending_.drop == drop) {
      pending_.len += len;
      if (pending_.len < kMergeBytes) return;
      a = std::move(pending_);
      pending_ = Range();
    } else {
      a = std::move(pending_);
      pending_ = Range{fd, off, len, drop, name};
      if (len >= kMergeBytes) {
        b = std::move(pending_);
        pending_ = Range();
      }
    }
  }
  kick(std::move(a));
  kick(std::move(b));
}

void WriteBehind::drain() {
  Range p;
  {
    std::lock_guard<std::mutex> g(m_);
    p = std::move(pending_);
    pending_ = Range();
  }
  kick(std::move(p));
  for (;;) {
    Range old;
    {
      std::lock_guard<std::mutex> g(m_);
      if (q_.empty()) return;
      old = std::move(q_.front());
      q_.pop_front();
      queued_ -= old.len;
    }
    settle(old);
  }
}

// Starts the write-back of r; if its pages may be dropped, queues it and settles the oldest ranges
// past the window.
void WriteBehind::kick(Range r) {
  if (!r.len || !sfr(r, kKick) || !r.drop) return;
  bool pushed = false;
  for (;;) {
    Range old;
    {
      std::lock_guard<std::mutex> g(m_);
      if (!pushed) queued_ += r.len, q_.push_back(std::move(r)), pushed = true;
      if (queued_ <= window_ || q_.empty()) return;
      old = std::move(q_.front());
      q_.pop_front();
      queued_ -= old.len;
    }
    settle(old);
  }
}

// One sync_file_range call; false (and off for this stream) where it is not supported.
bool WriteBehind::sfr(const Range& r, unsigned flags) {
  int err = fake_;
  calls_.fetch_add(1, std::memory_order_relaxed);
#ifdef SYNC_FILE_RANGE_WRITE
  if (!err) {
    while (::sync_file_range(r.fd, off64_t(r.off), off64_t(r.len), flags) != 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
  }
#else
  (void)flags;
  if (!err) err = ENOSYS;
#endif
  if (!err) return true;
  if (err == ENOSYS || err == EINVAL || err == ESPIPE || err == EOPNOTSUPP) {
    off_.store(true, std::memory_order_relaxed);
    return false;
  }
  ErrorDetails d;
  d.tensor = r.name;
  throw Error(ErrorCode::Io, std::string("write failed (write-back): ") + std::strerror(err) + " (tensor '" + r.name + "')", d);
}

void WriteBehind::settle(const Range& r) {
  if (!sfr(r, kWait)) return;
#ifdef POSIX_FADV_DONTNEED
  calls_.fetch_add(1, std::memory_order_relaxed);
  ::posix_fadvise(r.fd, off_t(r.off), off_t(r.len), POSIX_FADV_DONTNEED);  // a hint: failures ignored
#endif
}

}  // namespace geoedit
