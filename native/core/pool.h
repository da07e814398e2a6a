// One shared worker pool for every call (many async calls may run at once).
#pragma once
#include <cstdint>
#include <functional>

namespace geoedit {

// Runs fn(begin, end) over [0, n) in chunks of `grain`, on up to `threads` threads
// (the caller is one of them; threads <= 0 means all). Exceptions: the one thrown for the
// lowest chunk is rethrown, so errors are deterministic whatever the thread count.
void parallel_for(int64_t n, int64_t grain, int threads, const std::function<void(int64_t, int64_t)>& fn);
int pool_threads();

}  // namespace geoedit
