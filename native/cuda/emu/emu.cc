// The CPU emulator's scheduler: each CUDA thread of a block is a cooperative fiber (own stack,
// a 6-register x86-64 context switch); blocks run one after another on the calling OS thread.
// __syncthreads and warp shuffles are barriers that yield to the scheduler until every thread
// (of the block, or of the warp) has arrived. A barrier that can never complete (a divergent
// __syncthreads) aborts with a message instead of hanging.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "cuda_runtime.h"

extern "C" __attribute__((visibility("hidden"))) void geoedit_emu_switch(void** save_sp, void* to_sp);

asm(R"(
  .text
  .globl geoedit_emu_switch
  .hidden geoedit_emu_switch
  .type geoedit_emu_switch,@function
geoedit_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size geoedit_emu_switch,.-geoedit_emu_switch
)");

namespace emu {

dim3 g_block_idx, g_block_dim, g_grid_dim;

namespace {

constexpr size_t kStack = 256 * 1024;

struct Fiber {
  void* sp = nullptr;
  unsigned tid = 0;
  bool done = false;
  std::vector<char> stack;
};

struct Warp {
  unsigned count = 0, gen = 0;
  alignas(16) unsigned char buf[32][16];
};

std::mutex g_mu;
std::vector<Fiber> g_fibers;
std::vector<Warp> g_warps;
std::vector<double> g_dyn;
void* g_sched_sp = nullptr;
int g_cur = -1;
const std::function<void()>* g_body = nullptr;
unsigned g_block_count = 0, g_block_gen = 0;
int g_or_flag = 0;
bool g_progress = false;

void yield() { geoedit_emu_switch(&g_fibers[size_t(g_cur)].sp, g_sched_sp); }

[[noreturn]] void trampoline() {
  (*g_body)();
  g_fibers[size_t(g_cur)].done = true;
  g_progress = true;
  geoedit_emu_switch(&g_fibers[size_t(g_cur)].sp, g_sched_sp);
  std::abort();
}

void start_fiber(Fiber& f) {
  if (f.stack.size() != kStack) f.stack.assign(kStack, 0);
  uintptr_t top = reinterpret_cast<uintptr_t>(f.stack.data() + f.stack.size());
  top &= ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;                                   // alignment: trampoline starts at rsp % 16 == 8
  *--sp = reinterpret_cast<void*>(&trampoline);      // popped by ret
  for (int i = 0; i < 6; ++i) *--sp = nullptr;       // rbp rbx r12 r13 r14 r15
  f.sp = sp;
  f.done = false;
}

}  // namespace

dim3 thread_idx() { return dim3(g_fibers[size_t(g_cur)].tid); }

void* dynamic_smem() { return g_dyn.data(); }

void syncthreads() {
  const unsigned gen = g_block_gen;
  g_progress = true;
  if (++g_block_count == g_block_dim.x) {
    g_block_count = 0;
    ++g_block_gen;
    return;
  }
  while (g_block_gen == gen) yield();
}

int syncthreads_or(int p) {
  if (p) g_or_flag = 1;
  syncthreads();
  const int r = g_or_flag;
  syncthreads();
  if (thread_idx().x == 0) g_or_flag = 0;
  syncthreads();
  return r;
}

static void warp_barrier(Warp& w) {
  const unsigned gen = w.gen;
  g_progress = true;
  if (++w.count == 32) {
    w.count = 0;
    ++w.gen;
    return;
  }
  while (w.gen == gen) yield();
}

void warp_exchange(const void* v, void* out, int src_lane, size_t bytes) {
  const unsigned tid = thread_idx().x;
  Warp& w = g_warps[tid / 32];
  std::memcpy(w.buf[tid & 31], v, bytes);
  warp_barrier(w);
  std::memcpy(out, w.buf[src_lane], bytes);
  warp_barrier(w);
}

void run(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body) {
  std::lock_guard<std::mutex> lock(g_mu);
  const unsigned n = block.x;
  if (n == 0 || (n % 32 != 0 && n > 32)) {
    std::fprintf(stderr, "geoedit CUDA emulator: block of %u threads is not supported\n", n);
    std::abort();
  }
  g_grid_dim = grid;
  g_block_dim = block;
  g_body = &body;
  g_dyn.assign(smem / sizeof(double) + 2, 0.0);
  if (g_fibers.size() < n) g_fibers.resize(n);
  g_warps.assign((n + 31) / 32, Warp());
  for (unsigned bx = 0; bx < grid.x; ++bx) {
    g_block_idx = dim3(bx);
    g_block_count = 0;
    g_or_flag = 0;
    for (unsigned t = 0; t < n; ++t) {
      g_fibers[t].tid = t;
      start_fiber(g_fibers[t]);
    }
    for (;;) {
      bool alive = false;
      g_progress = false;
      for (unsigned t = 0; t < n; ++t) {
        if (g_fibers[t].done) continue;
        alive = true;
        g_cur = int(t);
        geoedit_emu_switch(&g_sched_sp, g_fibers[t].sp);
      }
      g_cur = -1;
      if (!alive) break;
      if (!g_progress) {
        std::fprintf(stderr, "geoedit CUDA emulator: deadlock in block %u (a barrier some threads never reach)\n", bx);
        std::abort();
      }
    }
  }
  g_body = nullptr;
}

}  // namespace emu

// ---- runtime API pieces that need state ------------------------------------------------------
struct emu_event { std::chrono::steady_clock::time_point t; };

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }

cudaError_t emu_malloc(void** p, size_t n) {
  *p = std::aligned_alloc(256, ((n + 255) / 256) * 256 + 256);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrMultiProcessorCount ? 2 : 232448;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "geoedit CPU emulator (logic check, not a GPU)");
  p->totalGlobalMem = size_t(16) << 30;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 2;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) { *e = new emu_event(); return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) { e->t = std::chrono::steady_clock::now(); return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}
