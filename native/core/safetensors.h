// safetensors header reader and validator (plain C++, no dependency).
// Validates as the reference implementation (huggingface/safetensors 0.8) does, checked by a
// differential run against it (docs/safety.md); one deliberate difference: duplicate names are refused.
// header length <= 100 MB
// and within the file, UTF-8 JSON object, known dtypes, data_offsets contiguous from 0 without gaps
// or overlaps, byte length = elements x dtype size, last offset = data size, no duplicate names,
// __metadata__ a string->string map. Every failure is Error(BadSafetensors) naming file and tensor.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace geoedit {

struct StTensor {
  std::string name;
  std::string dtype;          // as in the file: "F32", "BF16", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // relative to the data section
};

struct StHeader {
  uint64_t file_size = 0;
  uint64_t header_len = 0;     // N
  uint64_t data_offset = 0;    // 8 + N
  bool has_metadata = false;
  std::vector<std::pair<std::string, std::string>> metadata;
  std::vector<StTensor> tensors;  // in data order (sorted by offset)
};

constexpr uint64_t kMaxHeaderBytes = 100000000ull;  // the reference's MAX_HEADER_SIZE

// Bits per element (4 and 6 for the sub-byte F4 / F6_* types), or 0 when the dtype is unknown.
size_t st_dtype_bits(const std::string& dtype);
// Bytes per element for whole-byte dtypes; 0 for unknown and sub-byte dtypes.
size_t st_dtype_size(const std::string& dtype);

// Parses the header bytes (the N bytes after the 8-byte length) of a file of file_size bytes.
StHeader parse_st_header(const char* json, size_t n, uint64_t file_size, const std::string& file);

// Parses a whole file held in memory (used by tests and the fuzzer).
StHeader parse_st_bytes(const uint8_t* bytes, size_t size, const std::string& file);

// Reads and validates the header of a file with pread (never maps or reads the data).
StHeader read_st_header(const std::string& path);

}  // namespace geoedit
