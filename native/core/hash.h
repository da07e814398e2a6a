// SHA-256 of input files for the provenance manifest, with the platform's OpenSSL (its SHA-NI /
// AVX2 code paths): inside Node the copy Node itself exports, elsewhere (the plain C++ tests) the
// system's libcrypto. Found at run time (dlsym), so the core has no link-time dependency on it and
// loads where neither exists (sha256_provider() then says why and the caller hashes another way).
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace geoedit {

// "" when SHA-256 is available; otherwise the reason.
const std::string& sha256_unavailable_reason();
// The library in use, e.g. "OpenSSL 3.0.19 1 Jul 2025" ("" when unavailable).
const std::string& sha256_provider();

class Sha256 {
 public:
  Sha256();  // throws Error(Internal) when unavailable
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* p, size_t n);
  std::string hex();  // finishes; the object is then spent

 private:
  void* ctx_ = nullptr;
};

struct HashFile {
  int fd = -1;
  uint64_t size = 0;   // bytes to hash from offset 0 (the file's size when it was opened)
  std::string path;    // for messages
};

struct HashResult {
  std::string sha256;  // hex
  double seconds = 0;  // time spent on this file
};

// Hashes whole files, several at once (up to `threads` files in parallel, 0: all cores; each
// file is one sequential SHA-256 stream), reading mapped 16 MiB windows (pread where a window cannot be
// mapped). Larger files start
// first. Throws Error(Io) naming the file (a short read: the file shrank); Error(Aborted) when
// *cancel becomes non-zero.
std::vector<HashResult> hash_files(const std::vector<HashFile>& files, int threads, const double* cancel = nullptr);

// The SHA-256 of an output file taken from the bytes as they are written (issue 17: the seal then
// does not read the file again). One sequential stream from offset 0: the caller feeds the bytes it
// writes, each write with a ticket taken in the order the writes were issued (ticket() on the
// issuing thread); feed() waits for the earlier tickets, so writes that run on several threads
// still reach the hash in issue order. A write that starts exactly at the hashed frontier is hashed
// from memory and advances it; any other (out of order, strided, a gap another writer fills later)
// is left to finish(), which reads [frontier, size) back from the file once every write is done.
// Correct whatever the order as long as each byte below the frontier is written once, before it
// is fed (the safetensors writer writes each range once: header, then tensors). A feed hashes
// without holding the lock (its turn keeps the others out), so ticket() never waits for a SHA-256
// update.
class OrderedHash {
 public:
  OrderedHash();
  OrderedHash(const OrderedHash&) = delete;
  OrderedHash& operator=(const OrderedHash&) = delete;
  uint64_t ticket();
  // `count` pieces of `n` bytes at p + k*n, written at file offsets off + k*stride. Waits for the
  // earlier tickets, then hashes the pieces that continue the frontier. True when all of them did
  // (the bytes are then in the hash: the caller may drop them from the page cache). Never throws:
  // a failing digest update marks the hash failed (finish() then reads the whole file).
  bool feed(uint64_t ticket, uint64_t off, const char* p, size_t n, size_t count = 1, uint64_t stride = 0);
  // A ticket whose write is abandoned (an error before the feed).
  void skip(uint64_t ticket);
  struct Result {
    std::string sha256;
    uint64_t from_memory = 0;  // bytes hashed as they were written
    uint64_t reread = 0;       // bytes read back from the file by finish()
  };
  // Reads [frontier, size) of fd (pread, 1 MiB pieces) into the hash and finishes it. Error(Io)
  // naming `path` on a short read; Error(Aborted) when *cancel becomes non-zero; Error(Internal)
  // naming `path` when a ticket taken has been neither fed nor skipped. It cannot tell whether a fed
  // piece's write is done (the writer feeds before its pwrite): call it only after every write of the
  // file has returned (lib/checkpoint/stream.ts does, after the stream call). Once only (a refused call
  // may be repeated).
  Result finish(int fd, uint64_t size, const std::string& path, const double* cancel = nullptr);
  // Tests only: called by feed() on its turn, once it has released the lock and before it hashes.
  std::function<void()> on_feed_unlocked;

 private:
  std::mutex m_;
  std::condition_variable cv_;
  uint64_t issued_ = 0, served_ = 0;
  uint64_t frontier_ = 0, from_memory_ = 0;
  bool failed_ = false, finished_ = false;
  std::unique_ptr<Sha256> h_;
};

}  // namespace geoedit
