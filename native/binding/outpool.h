// Fresh edit outputs from recycled, already resident memory (outpool.cc).
#pragma once
#include <node_api.h>

#include <cstddef>

namespace geoedit_binding {

// Outputs below this size take the ordinary allocation (their page faults cost little).
constexpr size_t kMinPooledOutput = size_t(8) << 20;

// A typed array of `count` elements of `elem` bytes over pooled memory: true with *array and
// *data set, or false (too small, pool off, external buffers not allowed): allocate as usual.
// The contents are not zeroed: the caller writes every element before JS reads any. *populate:
// bytes of a new mapping (0 for a recycled one) to hand to populate_output off the JS thread.
bool pooled_output(napi_env env, napi_typedarray_type type, size_t count, size_t elem, napi_value* array, void** data,
                   size_t* populate);

// Faults in a new mapping's pages on `threads` of the core's pool before the edit writes them
// (MADV_POPULATE_WRITE, 2 MiB at a time; nothing where the kernel lacks it) and times it: the pool
// forces a collection only while one costs less than this first touch. Any thread.
void populate_output(void* m, size_t len, int threads);

// Marks the ArrayBuffer `ab` untransferable (Node's markAsUntransferable, handed over by lib/ at
// load) and returns true, where that leaves JS no way to move its memory to another owner (the
// engine has no ArrayBuffer.prototype.transfer); false otherwise (nothing marked). common.cc.
bool guard_untransferable(napi_env env, napi_value ab);
// Whether guard_untransferable would return true for an ArrayBuffer of env (nothing marked). common.cc.
bool can_guard_untransferable(napi_env env);

struct OutputPoolStats {
  size_t hits, misses, idle_bytes, cap;
  size_t early;  // outputs returned when their ArrayBuffer object was collected (before V8 freed the memory)
  size_t reclaimed;  // of those, found collected through their weak reference (before their finalizer ran)
  size_t forced;     // full collections the pool asked V8 for (its idle list was empty)
  size_t futile;     // of those, collections that freed no output
  double gc_ms;      // moving average of a forced collection's time
  double fault_ms_per_mib;  // moving average of a new mapping's first touch per MiB (populate_output)
  size_t uncounted;  // outputs made over a backing store V8 does not count as external memory (outpool.cc)
  size_t marking;    // incremental collections the pool started for those (it never waits for one)
};
OutputPoolStats output_pool_stats();
// Why env's 64 MiB outputs cannot be made uncounted, or "" where they can (outpool.cc
// uncounted_unavailable: "off", "transfer", "node", "symbols", "external", "probe").
const char* output_pool_uncounted_unavailable(napi_env env);

}  // namespace geoedit_binding
