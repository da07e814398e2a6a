// A SIGBUS guard for mapped windows of input files (issue 14 class 6a), shared by the stream
// (core/stream.cc) and the file hash (core/hash.cc).
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

}  // namespace bus
}  // namespace geoedit
