// The SIGBUS guard for mapped input windows (see busguard.h).
#include "busguard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

namespace geoedit {
namespace bus {

namespace {

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

}  // namespace

void install() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_page = uintptr_t(sysconf(_SC_PAGESIZE));
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_prev);
  });
}

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

const char* GuardedMap::map(int fd, uint64_t off, size_t len, bool populate, bool sequential) {
  release();
  if (len == 0) return nullptr;
  install();
  static const uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
  const uint64_t start = off & ~(page - 1);
  const size_t maplen = size_t(off - start) + len;
  void* m = ::mmap(nullptr, maplen, PROT_READ, MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, off_t(start));
  if (m == MAP_FAILED) return nullptr;
  Slot* s = claim(m, maplen);
  if (!s) {
    ::munmap(m, maplen);
    return nullptr;
  }
  if (sequential) ::madvise(m, maplen, MADV_SEQUENTIAL);  // a hint: failures ignored
  map_ = m;
  len_ = maplen;
  slot_ = s;
  static const bool kTruncateMapped = std::getenv("GEOEDIT_TEST_TRUNCATE_MAPPED") != nullptr;  // tests only
  if (kTruncateMapped && ::ftruncate(fd, off_t(start)) != 0) {}
  return static_cast<const char*>(m) + (off - start);
}

void GuardedMap::release() {
  if (slot_) bus::release(slot_);
  if (map_) ::munmap(map_, len_);
  map_ = nullptr;
  len_ = 0;
  slot_ = nullptr;
}

}  // namespace bus
}  // namespace geoedit
