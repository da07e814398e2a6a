// The SIGBUS guard for mapped input windows (see busguard.h).
#include "busguard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

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

}  // namespace bus
}  // namespace geoedit
