// O_DIRECT output writes for the checkpoint data path (issue 17; core/stream.cc's writer).
// A buffered write copies every output byte into a new page-cache page (the kernel's copy was 10% of
// a profile of the default edit) and leaves the write-back to the write-behind (writebehind.h). A
// direct write hands the buffer to the device: no copy, no page-cache pages. So each large write is
// split: the part that is aligned on kAlign in the file *and* in memory (the writer places each
// block in its buffer at the file offset's remainder, so both line up) goes through a second
// descriptor of the same file opened with O_DIRECT; the unaligned head and tail (the safetensors
// header's end, a tensor's start and end inside a page) are written buffered through the caller's
// descriptor, as before, and given to the write-behind. Writes smaller than kMinBytes stay buffered
// (a direct write waits for the device; many tiny tensors would each pay that), and so do blocks
// the output's hash will read back (out of file order: stream.cc passes no O_DIRECT descriptor).
//
// The bytes in the file are the same whichever way they went (tests: test/e2e/output-hash.test.ts "direct writes"
// and the core test). Durability is unchanged: O_DIRECT writes no metadata and flushes no disk cache,
// so the job's fsyncs (docs/safety.md) stay as they are.
//
// Fallback: a file system that refuses O_DIRECT at open (EINVAL), a descriptor that is not a regular
// file, or a /proc that cannot reopen it: every write buffered. One that refuses it at a write
// (EINVAL: an alignment the device does not accept, some FUSE/network file systems): that range is
// written buffered and direct writes are off for the rest of the stream call; nothing is lost, as a
// refused write writes nothing. Any other failure (ENOSPC, EIO) is the write's error (ERR_IO).
// GEOEDIT_DIRECT_WRITE=0 turns direct writes off. GEOEDIT_TEST_DIRECT_WRITE=refuse-open|refuse-write
// (tests only) makes every O_DIRECT open, or every direct write, fail with EINVAL; =eio every direct
// write fail with EIO. Plain C++.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace geoedit {

// pwrite of all `len` bytes (retrying EINTR and short writes); Error(Io) "write failed: …".
void pwrite_all(int fd, const char* src, size_t len, uint64_t off);

class DirectWrites {
 public:
  static constexpr uint64_t kAlign = 4096;               // file offset, length and memory alignment
  static constexpr uint64_t kMinBytes = uint64_t(1) << 20;  // aligned bytes below which a write stays buffered
  enum Mode : int { Off = 0, On = 1, RefuseOpen = 2, RefuseWrite = 3, FailWrite = 4 };
  explicit DirectWrites(int mode = mode_from_env()) : mode_(mode) {}
  DirectWrites(const DirectWrites&) = delete;
  DirectWrites& operator=(const DirectWrites&) = delete;
  ~DirectWrites();  // closes the O_DIRECT descriptors (after the caller's writes are done)
  // The O_DIRECT descriptor of fd's file (opened once per fd, on the calling thread), -1 where
  // direct writes are off, refused or impossible for it.
  int fd_for(int fd);
  // Writes len bytes from p at off of fd: the aligned middle through dfd (from fd_for(fd); -1:
  // none) when large enough, the rest buffered through fd, each buffered piece reported to
  // `buffered(off, len)` once written. Any thread.
  void write(int fd, int dfd, const char* p, size_t len, uint64_t off, const std::function<void(uint64_t, uint64_t)>& buffered);
  // Process-wide counters (tests, benchmarks): bytes written direct and buffered by write(), and
  // the O_DIRECT opens or writes refused.
  struct Stats {
    uint64_t direct = 0, buffered = 0, refused = 0;
  };
  static Stats stats();
  // GEOEDIT_DIRECT_WRITE / GEOEDIT_TEST_DIRECT_WRITE as a Mode.
  static int mode_from_env();

 private:
  const int mode_;
  std::atomic<bool> off_{false};  // a direct write was refused: buffered from then on
  std::map<int, int> fds_;        // caller's fd -> O_DIRECT fd (-1: none)
};

}  // namespace geoedit
