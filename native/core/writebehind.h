// Write-behind for the checkpoint data path's outputs (issue 17; core/stream.cc's writer).
// Pages written through the page cache are written back by the kernel only past its dirty
// thresholds (about 2 GiB on the development VM) or at the job's fsync: a whole output then waits
// for the disk at the end, and every written page is a new page-cache page. On a VM whose host takes
// back free guest memory (free page reporting), the first touch of such a page costs a host fault:
// writing 2 GiB took 4.4 s of system time into fresh pages, 0.5 s into pages just freed. So the
// stream starts the write-back of each range as soon as it is written (sync_file_range WRITE) and,
// once more than the window is queued behind the writer, waits for the oldest range to be on disk
// (WAIT_BEFORE|WRITE|WAIT_AFTER) and drops it from the page cache (posix_fadvise DONTNEED): only
// ranges whose bytes are already in the file's OrderedHash (nothing reads them again), whole pages
// only (the kernel keeps partial ones). The next writes reuse those pages, and the job's final
// fsync finds little left to write. Durability is still that fsync's (sync_file_range writes no
// metadata and flushes no disk cache).
//
// Contiguous writes are merged: a write that continues the previous one (same file, same drop) joins
// it, and the merged range is handed to the kernel once it reaches kMergeBytes (or at the next write
// elsewhere, or at drain()), so small tensors and headers do not cost a system call each (a model of
// 200,000 tiny tensors made 200,000 sync_file_range calls and as many waits and fadvises).
//
// GEOEDIT_WRITE_BEHIND=0 turns it off, =N sets the window in MiB (default 64). Where sync_file_range
// is not supported (ENOSYS, EINVAL, ESPIPE, EOPNOTSUPP: another OS, some file systems, a sandbox) the
// stream writes as before; any other failure of it (EIO, ENOSPC) is a write error (ERR_IO, naming the
// first tensor of the range). GEOEDIT_TEST_SYNC_FILE_RANGE=unsupported|eio (tests only) makes every
// call fail that way. Plain C++ (no Node headers).
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

namespace geoedit {

class WriteBehind {
 public:
  static constexpr uint64_t kMergeBytes = uint64_t(1) << 20;
  // window: bytes queued behind the writer before the oldest range is waited for (0: off);
  // fake_errno (tests only): every sync_file_range fails with it (0: the real call).
  explicit WriteBehind(uint64_t window = window_from_env(), int fake_errno = fake_errno_from_env())
      : window_(window), fake_(fake_errno) {}
  WriteBehind(const WriteBehind&) = delete;
  WriteBehind& operator=(const WriteBehind&) = delete;
  // [off, off + len) of fd is written (bytes of tensor `name`, for messages); drop: its bytes may
  // leave the page cache once on disk. Any thread. Error(Io) on a failing write-back.
  void written(int fd, uint64_t off, uint64_t len, bool drop, const std::string& name);
  // Every range to disk and out of the page cache (the end of a stream call).
  void drain();
  // System calls made so far (sync_file_range and posix_fadvise; tests).
  uint64_t syscalls() const { return calls_.load(std::memory_order_relaxed); }
  // False once sync_file_range proved unsupported here (plain writes from then on).
  bool enabled() const { return !off_.load(std::memory_order_relaxed); }
  // GEOEDIT_WRITE_BEHIND in bytes (default 64 MiB; 0: off) and GEOEDIT_TEST_SYNC_FILE_RANGE as an errno.
  static uint64_t window_from_env();
  static int fake_errno_from_env();

 private:
  struct Range {
    int fd = -1;
    uint64_t off = 0, len = 0;
    bool drop = false;
    std::string name;  // the first tensor written in it
  };
  bool sfr(const Range& r, unsigned flags);
  void kick(Range r);
  void settle(const Range& r);
  const uint64_t window_;
  const int fake_;
  std::atomic<bool> off_{false};
  std::atomic<uint64_t> calls_{0};
  std::mutex m_;
  Range pending_;           // written, not handed to the kernel yet (len 0: none)
  std::deque<Range> q_;     // handed to the kernel, to be waited for and dropped
  uint64_t queued_ = 0;
};

}  // namespace geoedit
