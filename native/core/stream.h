// The checkpoint data path: edits (or copies, or converts) tensors straight from safetensors files
// to an output file, in row blocks, so memory stays bounded whatever the model size.
// Inputs are mapped one block window at a time (or pread into an aligned buffer when a tensor is
// not aligned to its element size, as in some older files); outputs are written with pwrite from
// two alternating buffers, the write of one block overlapping the compute of the next (also across
// the tasks of one call).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "geoedit/geoedit.h"

namespace geoedit {

struct StreamSrc {
  int fd = -1;
  uint64_t offset = 0;   // absolute byte offset of the tensor's data in the file
  DType dtype = DType::F32;
  std::string file;      // for messages
};

struct StreamTask {
  enum Kind : uint8_t { Edit = 0, Copy = 1, Convert = 2 } kind = Edit;
  std::string name;
  int64_t rows = 0, cols = 0;          // Edit / Convert (Convert: rows*cols elements)
  uint64_t copy_bytes = 0;             // Copy
  StreamSrc base, old_, new_;          // Copy / Convert use base only
  StreamSrc imp_old, imp_new;          // optional (fd < 0: magnitude importance)
  const float* c_new = nullptr;        // strategy custom
  const float* c_old = nullptr;
  int out_fd = -1;                     // < 0: analyse only
  uint64_t out_offset = 0;
  DType out_dtype = DType::F32;
  // Per-row results (Edit), each optional, `rows` entries.
  double* cos = nullptr;
  uint8_t* region = nullptr;
  float* coef_new = nullptr;
  float* coef_old = nullptr;
  double* delta_sq = nullptr;
  double* na = nullptr;
  double* nb = nullptr;
};

struct StreamControl {
  // Written by the worker: input bytes processed so far (read by the caller for progress).
  double* bytes_done = nullptr;
  // Written by the caller: non-zero asks the worker to stop at the next block (ERR_ABORTED).
  const double* cancel = nullptr;
  // Written by the worker: the index of the task in progress.
  double* task_index = nullptr;
};

// Runs the tasks in order. Throws geoedit::Error naming the tensor (and row for non-finite values).
void run_stream(const std::vector<StreamTask>& tasks, const Params& params, const RunOptions& ro,
                size_t block_bytes, const StreamControl& ctl);

}  // namespace geoedit
