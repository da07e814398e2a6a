// SHA-256 of input files for the provenance manifest, with the platform's OpenSSL (its SHA-NI /
// AVX2 code paths): inside Node the copy Node itself exports, elsewhere (the plain C++ tests) the
// system's libcrypto. Found at run time (dlsym), so the core has no link-time dependency on it and
// loads where neither exists (sha256_provider() then says why and the caller hashes another way).
#pragma once
#include <atomic>
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
// file is one sequential SHA-256 stream), reading with pread in 1 MiB pieces. Larger files start
// first. Throws Error(Io) naming the file (a short read: the file shrank); Error(Aborted) when
// *cancel becomes non-zero.
std::vector<HashResult> hash_files(const std::vector<HashFile>& files, int threads, const double* cancel = nullptr);

}  // namespace geoedit
