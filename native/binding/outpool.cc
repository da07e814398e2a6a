// Fresh edit outputs without first-touch page faults: large outputs are external ArrayBuffers
// over memory this pool maps (2 MiB aligned, transparent huge pages asked for) and takes back when
// the array is dead, so the next output of the same size reuses pages that are already resident
// instead of having the kernel fault in and zero new ones (in this VM a first touch costs 0.5-5 ms
// per MiB, several times the edit itself). Every byte of a pooled buffer is written by the edit
// before JS sees it (an edit writes every element of its output, or fails and the array is dropped
// unseen).
//
// When a buffer comes back. Only a garbage collection can tell that JS no longer holds an output,
// so the pool learns it three ways, the first that applies:
//   - a weak reference to the ArrayBuffer object, looked at when the idle list has no buffer of the
//     size asked for: empty means V8 has collected the object, so its memory is free now (Node-API
//     runs finalizers later, from the event loop: up to a call later in a loop of edits);
//   - a finalizer on the ArrayBuffer object (the same, from the event loop);
//   - the backing store's deleter (V8 frees the memory; after its array-buffer sweep, often a call
//     or two later).
// The first two are safe only where JS cannot have moved the memory to another ArrayBuffer: the
// buffer is marked untransferable (postMessage/structuredClone copy it) and the engine has no
// ArrayBuffer.prototype.transfer (guard_untransferable); elsewhere only the deleter returns it.
// Whichever runs first returns the buffer; the later ones only count down the record (all run on
// the JS thread of the environment that made the array).
//
// Collections. V8 counts an external ArrayBuffer's bytes as external memory and collects more often
// as that grows; for pooled memory that only costs time (a collection during each call, on the cores
// the edit uses) without freeing anything: the pool keeps its pages resident either way. So the
// pool cancels V8's count for the ArrayBuffers it hands out and reports only memory it newly maps
// (while that output is out). Only below V8's soft limit (64 MiB, kCountLimit): above it V8 frees a
// store after a collection, so its next count starts from a low point and crosses the limit set there
// whatever the pool does; such outputs keep the earlier accounting (V8's count, and the pool reports
// each one while it is out). When the idle list is empty but outputs of that size are out in this
// environment, the pool asks V8 for one full collection right there (before the edit starts), then
// looks at the weak references again: one collection costs a few ms on a small heap, a new mapping
// far more. It does so only while that pays: while the collections it forced took less than
// kForcedGcMsPerMiB per MiB of the output (a moving average), and after a collection that freed
// nothing it skips the next 1, 3, 7, ... chances (the caller keeps its outputs). Node-API has no call
// for a collection: the pool reports an external-memory jump far above V8's hard limit and takes it
// back at once, which makes V8 collect synchronously ("external memory pressure").
// Only outputs below kCountLimit (or uncounted ones, below) are collected for this way: larger ones
// keep V8's count, so V8 collects for them by itself, and forcing one more measured slower (see recycle).
// Uncounted outputs. V8 11 (Node 20) checks each positive change of its external-memory count against
// the lowest count since its last full collection plus 64 MiB, so one ArrayBuffer of 64 MiB or more
// starts a collection whatever the pool takes off before (taking it off lowers that lowest count).
// Where it can (uncounted_ok), the pool therefore makes outputs of 64 MiB over a backing
// store with V8's empty deleter, which V8 neither counts nor frees (BackingStore::EmptyDeleter, made
// through the few V8 functions it looks up by name: uncounted_arraybuffer), and takes them back only
// when their object is collected (weak reference, finalizer). Newly mapped memory is still reported
// while that output is out, so V8 learns what a caller keeps; for these outputs the pool never forces
// a collection: it starts incremental ones ahead (kMarkAt). GEOEDIT_OUTPUT_POOL_UNCOUNTED=0: never.
// GEOEDIT_OUTPUT_POOL_GC=0 turns the forced collections off (an application with a large heap, where
// a full collection costs more than it saves): outputs then come back only when V8 collects on its own.
//
// The pool keeps at most GEOEDIT_OUTPUT_POOL_MB MiB of idle buffers (default: 1/8 of physical
// memory, at most 4 GiB; 0 turns the pool off). Where a runtime does not allow external buffers (a
// V8 sandbox, as in Electron), napi_create_external_arraybuffer fails and the caller falls back to
// an ordinary ArrayBuffer.
//
// This file uses only the Node-API C interface: it needs napi_create_external_arraybuffer, which
// the NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED build flag hides from everything else.
#undef NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED
#include <node_api.h>

#include <dlfcn.h>
#include <sys/mman.h>
#ifndef MADV_POPULATE_WRITE
#ifdef __linux__
#define MADV_POPULATE_WRITE 23  // Linux 5.14 (older headers): madvise fails with EINVAL on older kernels
#endif
#endif
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/pool.h"
#include "outpool.h"

namespace geoedit_binding {

namespace {

constexpr size_t kHuge = size_t(2) << 20;
// A forced collection pays while it costs less than this per MiB of the output it may free (a new
// mapping's first touch cost 0.5-5 ms per MiB in this VM, 2026-12-01). Past it, one chance in 16 still
// collects, to follow a heap that shrank.
constexpr double kForcedGcMsPerMiB = 1.0;
// V8's count is taken off only for outputs below V8's soft external-memory limit (64 MiB): above it,
// V8 collects for them anyway (below), and an A/B run at load 6-7 (docs/performance.md) showed more CPU
// per call with the count taken off than with the earlier accounting (V8's count plus the pool's).
constexpr size_t kCountLimit = size_t(64) << 20;
// Outputs of kCountLimit up to this size are made over stores V8 does not count (uncounted_arraybuffer,
// where uncounted_ok): a collection for them is only the pool's. Smaller ones do not need it (the
// cancelled count above keeps V8 quiet), larger ones keep V8's count: there the pool's forced
// collections cost more CPU than V8's own (256 MiB outputs; docs/performance.md, 2026-12-01 pool3).
constexpr size_t kUncountedMax = size_t(64) << 20;
// For uncounted outputs the pool starts an incremental collection (start_marking) once this many of
// the size are out, and does not wait for one to finish (the jump that starts it can still make V8
// collect synchronously where it passes V8's hard limit — a small heap, many reported outputs held — and
// V8 advances a running marking on the JS thread in steps): in the loops callers write 4-5 buffers (320 MiB at
// 64 MiB) and one collection per 3-4 calls (measured, load 5: 3 out gave one per 2 calls, whose
// concurrent marking cost as much CPU per call as V8's own collection per call; 4 gave 0.92-0.94x the
// reused call's CPU).
constexpr size_t kMarkAt = 4;

struct Lease;

struct Pool {
  std::mutex m;
  std::multimap<size_t, void*> idle;  // mapping length -> mapping
  size_t idle_bytes = 0;
  size_t cap = 0;
  size_t hits = 0, misses = 0, early = 0, reclaimed = 0, forced = 0, futile = 0, uncounted = 0, marking = 0;
  std::vector<Lease*> out;        // leases with a weak reference, not returned yet
  double gc_ms = 0;               // moving average of the forced collections' time (0: none yet)
  double fault_ms_per_mib = 0;    // moving average of a new mapping's first touch, per MiB (0: none yet)
  unsigned skip = 0, backoff = 0;  // forced collections to skip; the next skip after a futile one
  unsigned costly = 0;             // chances skipped for the cost since the last collection
  bool no_gc = false;              // GEOEDIT_OUTPUT_POOL_GC=0: never force a collection
  bool counted_only = false;       // GEOEDIT_OUTPUT_POOL_UNCOUNTED=0: never an uncounted store
  unsigned since_mark = 0;         // uncounted outputs made since the pool last started a collection
};

Pool& pool() {
  // Never destroyed: finalizers of the last arrays may run while the process exits.
  static Pool* p = [] {
    auto* q = new Pool;
    const char* g = std::getenv("GEOEDIT_OUTPUT_POOL_GC");
    q->no_gc = g && g[0] == '0' && g[1] == 0;
    const char* u = std::getenv("GEOEDIT_OUTPUT_POOL_UNCOUNTED");
    q->counted_only = u && u[0] == '0' && u[1] == 0;
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

void* take_idle(size_t len) {
  Pool& p = pool();
  std::lock_guard<std::mutex> g(p.m);
  auto it = p.idle.find(len);
  if (it == p.idle.end()) return nullptr;
  void* m = it->second;
  p.idle.erase(it);
  p.idle_bytes -= len;
  return m;
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

// One pooled output: returned by the first of its returns to run, freed by the last finalizer.
struct Lease {
  void* m;
  size_t len;
  napi_env env;
  int pending = 1;        // finalizers still to run (1 or 2)
  bool returned = false;
  int64_t reported = 0;   // external memory reported to V8 for it (taken back when it is returned)
  int64_t cancelled = 0;  // V8's own count of the ArrayBuffer cancelled (given back when V8 frees it)
  bool uncounted = false; // over a store V8 neither counts nor frees (uncounted_arraybuffer)
  napi_ref weak = nullptr;
};

void unlist(Lease* l) {
  Pool& p = pool();
  std::lock_guard<std::mutex> g(p.m);
  for (size_t i = 0; i < p.out.size(); ++i)
    if (p.out[i] == l) {
      p.out[i] = p.out.back();
      p.out.pop_back();
      break;
    }
}

// Returns the buffer (once); `early`: before V8 freed the memory.
void give_back(napi_env env, Lease* l, bool early) {
  if (l->returned) return;
  l->returned = true;
  if (l->weak) {
    unlist(l);
    napi_delete_reference(env, l->weak);
    l->weak = nullptr;
  }
  int64_t ignored = 0;
  if (l->reported) napi_adjust_external_memory(env, -l->reported, &ignored);
  if (early) {
    std::lock_guard<std::mutex> g(pool().m);
    ++pool().early;
  }
  give(l->m, l->len);
}
void finished(Lease* l) {
  if (--l->pending == 0) delete l;
}
// The backing store's deleter (V8 frees the memory and takes its count back) and the ArrayBuffer
// object's finalizer.
void finalize_store(napi_env env, void*, void* hint) {
  Lease* l = static_cast<Lease*>(hint);
  int64_t ignored = 0;
  if (l->cancelled) napi_adjust_external_memory(env, l->cancelled, &ignored);
  give_back(env, l, false);
  finished(l);
}
void finalize_object(napi_env env, void* data, void*) {
  Lease* l = static_cast<Lease*>(data);
  give_back(env, l, true);
  finished(l);
}

// The V8 functions an uncounted output needs (see the top of the file), looked up by their
// Itanium-mangled names in the running process: the addon is built against Node-API headers only.
struct V8Api {
  void* (*current)();  // v8::Isolate::GetCurrent()
  // v8::ArrayBuffer::NewBackingStore(void*, size_t, DeleterCallback, void*): the std::unique_ptr it
  // returns is written through the hidden first argument (a class with a destructor)
  void* (*new_store)(void** ret, void* data, size_t len, void (*deleter)(void*, size_t, void*), void* deleter_data);
  // v8::ArrayBuffer::New(Isolate*, std::shared_ptr<BackingStore>): the shared_ptr is passed by address
  // (the caller's temporary); the Local it returns is one pointer: a napi_value (Node's v8impl)
  napi_value (*new_buffer)(void* isolate, std::shared_ptr<void>* store);
  void (*empty_deleter)(void*, size_t, void*);  // v8::BackingStore::EmptyDeleter
  void (*destroy_store)(void*);                  // v8::BackingStore::~BackingStore()
};
const V8Api* v8_api() {
#if !(defined(__x86_64__) && defined(__linux__))
  // The calls below assume the x86-64 System V convention for V8's unique_ptr return (a hidden pointer
  // passed as the first argument); AArch64 passes it in x8, other ABIs differ again: counted path there.
  return nullptr;
#else
  static const V8Api api = [] {
    V8Api a{};
    a.current = reinterpret_cast<void* (*)()>(::dlsym(RTLD_DEFAULT, "_ZN2v87Isolate10GetCurrentEv"));
    a.new_store = reinterpret_cast<decltype(a.new_store)>(::dlsym(RTLD_DEFAULT, "_ZN2v811ArrayBuffer15NewBackingStoreEPvmPFvS1_mS1_ES1_"));
    a.new_buffer = reinterpret_cast<decltype(a.new_buffer)>(::dlsym(RTLD_DEFAULT, "_ZN2v811ArrayBuffer3NewEPNS_7IsolateESt10shared_ptrINS_12BackingStoreEE"));
    a.empty_deleter = reinterpret_cast<decltype(a.empty_deleter)>(::dlsym(RTLD_DEFAULT, "_ZN2v812BackingStore12EmptyDeleterEPvmS1_"));
    a.destroy_store = reinterpret_cast<decltype(a.destroy_store)>(::dlsym(RTLD_DEFAULT, "_ZN2v812BackingStoreD1Ev"));
    return a;
  }();
  return api.current && api.new_store && api.new_buffer && api.empty_deleter && api.destroy_store ? &api : nullptr;
#endif
}

// An ArrayBuffer of `bytes` over m with V8's empty deleter, in the calling callback's handle scope
// (V8 neither counts nor frees such a store), or nullptr.
napi_value uncounted_arraybuffer(void* m, size_t bytes) {
  const V8Api* a = v8_api();
  void* isolate = a ? a->current() : nullptr;
  if (!isolate) return nullptr;
  void* raw = nullptr;  // the unique_ptr's one pointer
  a->new_store(&raw, m, bytes, a->empty_deleter, nullptr);
  if (!raw) return nullptr;
  const auto destroy = a->destroy_store;
  // what `std::shared_ptr<BackingStore>(std::move(unique))` makes in code built with V8's headers
  std::shared_ptr<void> store(raw, [destroy](void* s) {
    destroy(s);
    ::operator delete(s);
  });
  return a->new_buffer(isolate, &store);
}

// Why outputs of env cannot be made uncounted ("" where they can; the same tests as uncounted_ok
// without the size): "off" (GEOEDIT_OUTPUT_POOL_UNCOUNTED=0), "transfer" (no untransferable guard),
// "node" (not Node 20), "symbols" (not x86-64 Linux, or a V8 function missing), "external" (no external buffers: a V8
// sandbox), "probe" (the probe buffer was counted or not made).
const char* uncounted_unavailable(napi_env env) {
  if (pool().counted_only) return "off";
  if (!can_guard_untransferable(env)) return "transfer";
  static const char* const runtime = [env]() -> const char* {
    const napi_node_version* v = nullptr;
    if (napi_get_node_version(env, &v) != napi_ok || !v || v->major != 20) return "node";
    if (!v8_api()) return "symbols";
    static char probe[1 << 16];
    napi_value ab;
    if (napi_create_external_arraybuffer(env, probe, 16, nullptr, nullptr, &ab) != napi_ok) return "external";
    int64_t before = 0, after = 0;
    napi_adjust_external_memory(env, 0, &before);
    const bool made = uncounted_arraybuffer(probe, sizeof probe) != nullptr;
    napi_adjust_external_memory(env, 0, &after);
    return made && after == before ? "" : "probe";
  }();
  return runtime;
}

// Whether outputs of env of `len` bytes are made uncounted: from kCountLimit to kUncountedMax, with the Node major
// this was measured on (20: later ones have ArrayBuffer.prototype.transfer, which rules it out
// anyway), where the runtime allows external buffers (no V8 sandbox), the V8 functions are there and
// a probe buffer shows V8 counted nothing for it, and where the buffer's object dying means its
// memory is free (no transfer: can_guard_untransferable). GEOEDIT_OUTPUT_POOL_UNCOUNTED=0: never.
bool uncounted_ok(napi_env env, size_t len) {
  return len >= kCountLimit && len <= kUncountedMax && !*uncounted_unavailable(env);
}

// Returns the leases of env and len whose ArrayBuffer V8 has collected; true if any. *out: how many
// such leases are out (collected or not).
bool reclaim(napi_env env, size_t len, size_t* out) {
  Pool& p = pool();
  std::vector<Lease*> mine;
  {
    std::lock_guard<std::mutex> g(p.m);
    for (Lease* l : p.out)
      if (l->env == env && l->len == len) mine.push_back(l);
  }
  *out = mine.size();
  size_t got = 0;
  for (Lease* l : mine) {
    napi_handle_scope scope;  // a live object looked at must not stay held by this call's scope
    if (napi_open_handle_scope(env, &scope) != napi_ok) continue;
    napi_value v = nullptr;
    const bool gone = napi_get_reference_value(env, l->weak, &v) == napi_ok && v == nullptr;
    napi_close_handle_scope(env, scope);
    if (gone) {
      give_back(env, l, true);
      ++got;
    }
  }
  std::lock_guard<std::mutex> g(p.m);
  p.reclaimed += got;
  return got > 0;
}

// One synchronous full collection (see the top of the file); its time goes into the average.
void collect(napi_env env) {
  const auto t0 = std::chrono::steady_clock::now();
  int64_t ignored = 0;
  const int64_t jump = int64_t(1) << 44;  // far above V8's hard limit (half the old generation's maximum)
  napi_adjust_external_memory(env, jump, &ignored);
  napi_adjust_external_memory(env, -jump, &ignored);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  Pool& p = pool();
  std::lock_guard<std::mutex> g(p.m);
  ++p.forced;
  p.gc_ms = p.gc_ms == 0 ? ms : 0.5 * (p.gc_ms + ms);
}

// Asks V8 to start an incremental collection and returns at once (V8 marks on its helper threads and
// finishes in a task on the JS thread): a jump of the count above V8's soft limit (its lowest count
// since the last mark-compact plus 64 MiB), far below its hard limit, taken back at once.
void start_marking(napi_env env) {
  int64_t ignored = 0;
  const int64_t jump = int64_t(65) << 20;
  napi_adjust_external_memory(env, jump, &ignored);
  napi_adjust_external_memory(env, -jump, &ignored);
  std::lock_guard<std::mutex> g(pool().m);
  ++pool().marking;
}

// A buffer of len for env from collected outputs, or nullptr.
void* recycle(napi_env env, size_t len, bool uncounted) {
  size_t out = 0;
  if (reclaim(env, len, &out)) return take_idle(len);
  // Uncounted outputs never wait for a collection here (a full one on the JS thread stops the event
  // loop for as long as it takes: 5-15 ms here, one of 72 ms seen at load 5): the pool
  // starts incremental ones ahead (pooled_output) and maps a new buffer when none has finished.
  if (uncounted) return nullptr;
  // The newest output is most likely still held (in a loop `r = await editTensor(...)` the previous
  // result stays reachable until the loop's next await): collect only with an older one out.
  // Outputs of V8's soft limit or more keep V8's count (kCountLimit): V8 collects for them on its own,
  // and a forced collection on top measured slower (a fresh-output loop of 256 MiB outputs, quiet,
  // 2026-12-01 16:24: 55-60 ms per call with it, 43-45 ms without, 40 ms with a reused `out`).
  Pool& p = pool();
  if (out < 2 || p.no_gc || len >= kCountLimit) return nullptr;
  {
    std::lock_guard<std::mutex> g(p.m);
    // a collection pays while it costs less than the first touch of a new mapping (measured, or the default)
    const double per_mib = p.fault_ms_per_mib > 0 ? p.fault_ms_per_mib : kForcedGcMsPerMiB;
    if (p.gc_ms > per_mib * double(len >> 20) && ++p.costly % 16 != 0) return nullptr;
    if (p.skip > 0) {
      --p.skip;
      return nullptr;
    }
  }
  collect(env);
  const bool got = reclaim(env, len, &out);
  {
    std::lock_guard<std::mutex> g(p.m);
    if (got) {
      p.backoff = 0;
    } else {
      ++p.futile;  // the caller holds its outputs (or V8 did not collect): try again later, less often
      p.backoff = p.backoff < 32 ? 2 * p.backoff + 1 : p.backoff;
      p.skip = p.backoff;
    }
  }
  return got ? take_idle(len) : nullptr;
}

}  // namespace

bool pooled_output(napi_env env, napi_typedarray_type type, size_t count, size_t elem, napi_value* array, void** data,
                   size_t* populate) {
  *populate = 0;
  const size_t bytes = count * elem;
  Pool& P = pool();
  if (bytes < kMinPooledOutput || P.cap == 0) return false;
  const size_t len = (bytes + kHuge - 1) & ~(kHuge - 1);
  const bool uncounted = uncounted_ok(env, len);
  void* m = take_idle(len);
  if (!m) m = recycle(env, len, uncounted);
  const bool mapped = m == nullptr;
  {
    std::lock_guard<std::mutex> g(P.m);
    if (mapped) ++P.misses;
    else ++P.hits;
  }
  if (mapped) m = map_new(len);
  if (!m) return false;
  napi_value ab = nullptr;
  Lease* l = new Lease{m, len, env};
  int64_t ignored = 0;
  if (uncounted) {
    // V8 counts nothing for this store and never frees it: the pool reports newly mapped memory while
    // the output is out (V8 learns what a caller keeps) and takes the buffer back when the object is
    // collected (finalizer or weak reference: below; an object JS never saw is returned at once).
    ab = uncounted_arraybuffer(m, bytes);
    if (ab && guard_untransferable(env, ab) && napi_add_finalizer(env, ab, l, finalize_object, nullptr, nullptr) == napi_ok) {
      l->uncounted = true;
    } else {
      delete l;
      give(m, len);
      return false;
    }
  } else {
    // V8 counts the ArrayBuffer's bytes when it is made (and 104 more on Node 20; as much comes off
    // when it frees the store) and may start a collection for them right there: taken off beforehand,
    // so that the count comes back to where it was. Given back when V8 has freed the store (the
    // deleter): exactly what was taken, so that the count never ends above where it was.
    if (bytes < kCountLimit) {
      l->cancelled = int64_t(bytes);
      napi_adjust_external_memory(env, -l->cancelled, &ignored);
    }
    if (napi_create_external_arraybuffer(env, m, bytes, finalize_store, l, &ab) != napi_ok) {
      if (l->cancelled) napi_adjust_external_memory(env, l->cancelled, &ignored);
      delete l;
      give(m, len);  // e.g. napi_no_external_buffers_allowed: the caller allocates as usual
      return false;
    }
  }
  if (mapped || (!l->cancelled && !l->uncounted)) {  // newly mapped memory, or V8's count kept (kCountLimit)
    l->reported = int64_t(len);
    napi_adjust_external_memory(env, l->reported, &ignored);
  }
  if (l->uncounted) {
    const bool weak = napi_create_reference(env, ab, 0, &l->weak) == napi_ok;
    bool mark = false;
    {
      std::lock_guard<std::mutex> g(P.m);
      ++P.uncounted;
      if (weak) P.out.push_back(l);
      size_t of_size = 0;  // this environment's outputs of this size out, this one included
      for (Lease* o : P.out) of_size += o->env == env && o->len == len;
      // With kMarkAt out, the older ones are likely dropped: a collection started now has them back by
      // the next call or the one after (the newest stays held in `r = await editTensor(...)`). At most
      // one per kMarkAt - 1 outputs made (a caller that keeps its outputs gets no more than that, and
      // V8's own for the new mappings it causes).
      if (P.since_mark < kMarkAt - 1) ++P.since_mark;
      mark = of_size >= kMarkAt && !P.no_gc && P.since_mark >= kMarkAt - 1;
      if (mark) P.since_mark = 0;
    }
    if (mark) start_marking(env);
  } else if (guard_untransferable(env, ab) && napi_add_finalizer(env, ab, l, finalize_object, nullptr, nullptr) == napi_ok) {
    l->pending = 2;
    if (napi_create_reference(env, ab, 0, &l->weak) == napi_ok) {
      std::lock_guard<std::mutex> g(P.m);
      P.out.push_back(l);
    }
  }
  if (napi_create_typedarray(env, type, count, ab, 0, array) != napi_ok) return false;  // ab is collected later
  *data = m;
  if (mapped) *populate = len;
  return true;
}

void populate_output(void* m, size_t len, int threads) {
#ifdef MADV_POPULATE_WRITE
  const auto t0 = std::chrono::steady_clock::now();
  bool ok = true;
  const int64_t chunks = int64_t(len / kHuge);
  geoedit::parallel_for(chunks, 1, threads, [&](int64_t a, int64_t b) {
    if (::madvise(static_cast<char*>(m) + a * kHuge, size_t(b - a) * kHuge, MADV_POPULATE_WRITE) != 0) ok = false;
  });
  if (!ok) return;  // e.g. EINVAL before Linux 5.14: the edit's own writes fault the pages in
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  Pool& p = pool();
  std::lock_guard<std::mutex> g(p.m);
  const double per = ms / double(len >> 20);
  p.fault_ms_per_mib = p.fault_ms_per_mib == 0 ? per : 0.5 * (p.fault_ms_per_mib + per);
#else
  (void)m, (void)len, (void)threads;
#endif
}

OutputPoolStats output_pool_stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> g(p.m);
  return OutputPoolStats{p.hits, p.misses, p.idle_bytes, p.cap, p.early, p.reclaimed, p.forced, p.futile, p.gc_ms, p.fault_ms_per_mib, p.uncounted, p.marking};
}

const char* output_pool_uncounted_unavailable(napi_env env) { return uncounted_unavailable(env); }

}  // namespace geoedit_binding
