// A SIGBUS guard for mapped windows of input files (issue 14 class 6a), and the one guarded window
// (GuardedMap) that the stream (core/stream.cc) and the file hash (core/hash.cc) both map inputs with.
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
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace geoedit {
namespace bus {

struct Slot {
  std::atomic<uintptr_t> lo{0}, hi{0};
  std::atomic<int> hit{0};
};

// Installs the handler (once per process).
void install();
// A slot for [p, p + len), or nullptr when all are taken (the caller then reads with pread).
Slot* claim(const void* p, size_t len);
void release(Slot* s);

// A read-only window [off, off + len) of a file, mapped (MAP_SHARED) and registered with the guard.
// map() returns the window's first byte, or nullptr where it cannot be mapped (mmap failed: a pipe, a
// file system without mmap) or every guard slot is taken (hundreds of concurrent windows): the caller
// reads those bytes with pread instead. After reading the window, faulted() says whether a read hit
// pages past the file's end (it shrank under the mapping): the bytes read are then zeros, not the
// file's, and the caller must fail (ERR_IO naming the file). One window at a time; map() releases the
// previous one. GEOEDIT_TEST_TRUNCATE_MAPPED (tests only) shrinks the file right after each map, the
// one moment a real truncation cannot be timed from outside.
class GuardedMap {
 public:
  GuardedMap() = default;
  GuardedMap(const GuardedMap&) = delete;
  GuardedMap& operator=(const GuardedMap&) = delete;
  ~GuardedMap() { release(); }
  // populate: fill the page tables in one call (MAP_POPULATE: a window read once, in full, at once);
  // sequential: madvise(MADV_SEQUENTIAL) (read-ahead for a window read front to back by several threads).
  const char* map(int fd, uint64_t off, size_t len, bool populate, bool sequential);
  bool faulted() const { return slot_ && slot_->hit.load(std::memory_order_acquire) != 0; }
  void release();

 private:
  void* map_ = nullptr;
  size_t len_ = 0;
  Slot* slot_ = nullptr;
};

}  // namespace bus
}  // namespace geoedit
