// Fresh edit outputs without first-touch page faults: large outputs are external ArrayBuffers
// over memory this pool maps (transparent huge pages asked for) and takes back when V8 collects
// the array, so the next output of the same size reuses pages that are already resident instead
// of having the kernel fault in and zero new ones (a zeroing pass as large as the output, on top
// of the edit's own write). Every byte of a pooled buffer is written by the edit before JS sees
// it (an edit writes every element of its output, or fails and the array is dropped unseen).
//
// A buffer comes back as soon as its ArrayBuffer object is collected (a finalizer on the object),
// not only when V8 later frees the memory (the backing store's deleter, which runs after the array
// buffers are swept, often a call or two later): in a loop that drops each output, the next outputs
// then reuse it instead of faulting in new pages. That is safe only where JS cannot have moved the
// memory to another ArrayBuffer: the buffer is marked untransferable (postMessage/structuredClone
// copy it) and the engine has no ArrayBuffer.prototype.transfer (guard_untransferable); elsewhere only
// the deleter returns it. Whichever of the two runs first returns the buffer, the second only frees
// the record (both run on the JS thread of the environment that made the array).
//
// The pool keeps at most GEOEDIT_OUTPUT_POOL_MB MiB of idle buffers (default: 1/8 of physical
// memory, at most 4 GiB; 0 turns the pool off). V8 is told of the external memory, so collections
// come as they would for its own arrays. Where a runtime does not allow external buffers (a V8
// sandbox, as in Electron), napi_create_external_arraybuffer fails and the caller falls back to
// an ordinary ArrayBuffer.
//
// This file uses only the Node-API C interface: it needs napi_create_external_arraybuffer, which
// the NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED build flag hides from everything else.
#undef NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED
#include <node_api.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>

#include "outpool.h"

namespace geoedit_binding {

namespace {

constexpr size_t kHuge = size_t(2) << 20;

struct Pool {
  std::mutex m;
  std::multimap<size_t, void*> idle;  // mapping length -> mapping
  size_t idle_bytes = 0;
  size_t cap = 0;
  size_t hits = 0, misses = 0, early = 0;
};

Pool& pool() {
  // Never destroyed: finalizers of the last arrays may run while the process exits.
  static Pool* p = [] {
    auto* q = new Pool;
    const char* e = std::getenv("GEOEDIT_OUTPUT_POOL_MB");
    if (e && *e) {
      q->cap = size_t(std::strtoull(e, nullptr, 10)) << 20;
    } else {
      const long pages = sysconf(_SC_PHYS_PAGES), ps = sysconf(_SC_PAGESIZE);
      const size_t phys = pages > 0 && ps > 0 ? size_t(pages) * size_t(ps) : 0;
      q->cap = phys / 8 < (size_t(4) << 30) ? phys / 8 : (size_t(4) << 30);
    }
    return q;
  }();
  return *p;
}

// A mapping of len bytes (a multiple of 2 MiB), 2 MiB aligned so that all of it can be huge pages.
void* map_new(size_t len) {
  void* m = ::mmap(nullptr, len + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  const uintptr_t a = reinterpret_cast<uintptr_t>(m), b = (a + kHuge - 1) & ~uintptr_t(kHuge - 1);
  if (b > a) ::munmap(m, b - a);
  const uintptr_t end = a + len + kHuge;
  if (end > b + len) ::munmap(reinterpret_cast<void*>(b + len), end - (b + len));
#ifdef MADV_HUGEPAGE
  ::madvise(reinterpret_cast<void*>(b), len, MADV_HUGEPAGE);  // a hint: failure is harmless
#endif
  return reinterpret_cast<void*>(b);
}

void* take(size_t len) {
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> g(p.m);
    auto it = p.idle.find(len);
    if (it != p.idle.end()) {
      void* m = it->second;
      p.idle.erase(it);
      p.idle_bytes -= len;
      ++p.hits;
      return m;
    }
    ++p.misses;
  }
  return map_new(len);
}

void give(void* m, size_t len) {
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> g(p.m);
    if (p.idle_bytes + len <= p.cap) {
      p.idle.emplace(len, m);
      p.idle_bytes += len;
      return;
    }
  }
  ::munmap(m, len);
}

// One pooled output: returned by the first of its finalizers to run, freed by the last.
struct Lease {
  void* m;
  size_t len;
  int pending;  // finalizers still to run (1 or 2)
  bool returned = false;
};

void release(node_api_basic_env env, Lease* l, bool early) {
  if (!l->returned) {
    l->returned = true;
    int64_t ignored = 0;
    napi_adjust_external_memory(env, -int64_t(l->len), &ignored);
    if (early) {
      std::lock_guard<std::mutex> g(pool().m);
      ++pool().early;
    }
    give(l->m, l->len);
  }
  if (--l->pending == 0) delete l;
}
// The backing store's deleter (V8 frees the memory) and the ArrayBuffer object's finalizer.
void finalize_store(node_api_basic_env env, void*, void* hint) { release(env, static_cast<Lease*>(hint), false); }
void finalize_object(node_api_basic_env env, void* data, void*) { release(env, static_cast<Lease*>(data), true); }

}  // namespace

bool pooled_output(napi_env env, napi_typedarray_type type, size_t count, size_t elem, napi_value* array, void** data) {
  const size_t bytes = count * elem;
  if (bytes < kMinPooledOutput || pool().cap == 0) return false;
  const size_t len = (bytes + kHuge - 1) & ~(kHuge - 1);
  void* m = take(len);
  if (!m) return false;
  napi_value ab;
  Lease* l = new Lease{m, len, 1};
  if (napi_create_external_arraybuffer(env, m, bytes, finalize_store, l, &ab) != napi_ok) {
    delete l;
    give(m, len);  // e.g. napi_no_external_buffers_allowed: the caller allocates as usual
    return false;
  }
  int64_t ignored = 0;
  napi_adjust_external_memory(env, int64_t(len), &ignored);
  if (guard_untransferable(env, ab) && napi_add_finalizer(env, ab, l, finalize_object, nullptr, nullptr) == napi_ok) l->pending = 2;
  if (napi_create_typedarray(env, type, count, ab, 0, array) != napi_ok) return false;  // ab is collected later
  *data = m;
  return true;
}

OutputPoolStats output_pool_stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> g(p.m);
  return OutputPoolStats{p.hits, p.misses, p.idle_bytes, p.cap, p.early};
}

}  // namespace geoedit_binding
