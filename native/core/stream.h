// The checkpoint data path: edits (or copies, or converts) tensors straight from safetensors files
// to an output file, in row blocks, so memory stays bounded whatever the model size.
// Inputs are mapped one block window at a time (or pread into an aligned buffer when a tensor is
// not aligned to its element size, as in some older files); on the GPU path a helper thread asks
// the kernel for the next block of every input meanwhile (posix_fadvise WILLNEED), so its disk
// read overlaps the work on this one. Outputs are written with pwrite from two alternating
// buffers, the write of one block overlapping the compute of the next (also across the tasks of
// one call), fed to the file's OrderedHash when the task has one, and written back as the stream
// goes (write-behind, see writebehind.h: sync_file_range behind the writer, contiguous writes merged, and the pages already in the
// hash dropped from the page cache once on disk), so the job's final fsync finds little left to do; the aligned
// middle of each large block is written with O_DIRECT instead (directwrite.h: no copy into the page cache). Edit blocks run on the CPU core (run_edit) or on the GPU (run_edit_cuda: each block
// is split into device chunks that go through >= 2 CUDA streams, copies overlapping kernels).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "core/hash.h"
#include "core/lora.h"
#include "geoedit/cuda.h"
#include "geoedit/geoedit.h"
#include "preserve.h"

namespace geoedit {

struct StreamSrc {
  int fd = -1;
  uint64_t offset = 0;   // absolute byte offset of the tensor's data in the file
  DType dtype = DType::F32;
  std::string file;      // for messages
};

struct StreamTask {
  // LoraMerge: a base tensor merged with two LoRA task vectors (issue 11: merged adapters stream
  // like checkpoint edits). rows x cols is tau's neuron view [m, n]; the base is stored [m, n], or
  // [n, m] when `transposed` (fan_in_fan_out). The task vectors come from the factors lora_old /
  // lora_new (tau = s*L*R, SPEC §4), formed inside the core one block at a time:
  //   density 1: factor-space geometry for all rows (run_lora_geometry), then each block of stored
  //     rows is merged with those coefficients (run_lora_merge);
  //   density < 1: each block of neuron rows is materialised and edited by run_edit as task vectors
  //     (tau_given); a transposed base is edited whole (a neuron is a stored column).
  // The same bytes as lib/lora-math.ts's loraGeometry + mergeLoraRows / denseLoraRows. Always on the CPU.
  enum Kind : uint8_t { Edit = 0, Copy = 1, Convert = 2, LoraMerge = 3 } kind = Edit;
  std::string name;
  int64_t rows = 0, cols = 0;          // Edit / Convert (Convert: rows*cols elements) / LoraMerge (tau [m, n])
  uint64_t copy_bytes = 0;             // Copy
  StreamSrc base, old_, new_;          // Copy / Convert use base only
  StreamSrc imp_old, imp_new;          // optional (fd < 0: magnitude importance)
  const float* c_new = nullptr;        // strategy custom
  const float* c_old = nullptr;
  int out_fd = -1;                     // < 0: analyse only
  uint64_t out_offset = 0;
  // The output file's SHA-256 as it is written (owned by the caller, shared by every task of that
  // file, across calls); null: not hashed here. Copy tasks then go through memory (pread + pwrite)
  // instead of copy_file_range, so their bytes reach the hash too.
  OrderedHash* out_hash = nullptr;
  DType out_dtype = DType::F32;
  RowStats stats{};                    // per-row results (Edit, LoraMerge), each optional, `rows` entries
  // LoraMerge only.
  LoraSide lora_old, lora_new;
  bool transposed = false;
  double* dot = nullptr;               // tau_old . tau_new per row (density 1 only), optional
  // Edit: how the neurons lie in the files (SPEC §2 layouts). Rows: `rows` neurons of `cols`
  // contiguous elements ([out, in], and [E, out, in] fused experts: E·out rows). Columns: `groups`
  // matrices [cols, rows/groups] stored one after the other (Conv1D [in, out]; [E, in, out]); neuron
  // k is column k % (rows/groups) of matrix k / (rows/groups), of length cols. Columns are streamed in
  // blocks: gathered into a row-major tile in cache-sized pieces, edited by the same per-row
  // pipeline, scattered back (strided pwrites from the writer thread): never a transposed copy of
  // the tensor. Stats, c_new/c_old and error positions are per neuron.
  enum Layout : uint8_t { RowsLayout = 0, ColumnsLayout = 1 } layout = RowsLayout;
  int64_t groups = 1;
  // SPEC §3 step 0 (core/preserve.h; Edit): the tensor's operator (owned by the caller, may be
  // shared by several tasks), and where its energy sums go (added to). Blocks are then a multiple
  // of kPreserveBlockRows rows (neurons), counted from the tensor's first neuron (columns too: a
  // block may span the stored matrices of [E, in, out]; the tile's rows are the neurons, so the
  // operator's dimension is `cols`, the input width, and the bytes are the rows task's on the
  // transposed tensor). The augmented form reads the bias (bias_base/old/new: [rows]
  // tensors, element k with neuron k in either layout) and writes its preserved task vectors to
  // bias_tau_old_out/new_out ([rows] f32, owned by the caller), for a later task that edits the
  // bias from them (tau_old_mem/tau_new_mem; always a rows task [1, m]).
  const Preserve* preserve = nullptr;
  PreserveStats* preserve_stats = nullptr;
  StreamSrc bias_base, bias_old, bias_new;
  float* bias_tau_old_out = nullptr;
  float* bias_tau_new_out = nullptr;
  // Edit from f32 task vectors in memory ([rows, cols], tau_given): old_/new_ are not read.
  const float* tau_old_mem = nullptr;
  const float* tau_new_mem = nullptr;
};

struct StreamControl {
  // Written by the worker: input bytes processed so far (read by the caller for progress).
  double* bytes_done = nullptr;
  // Written by the caller: non-zero asks the worker to stop at the next block (ERR_ABORTED).
  const double* cancel = nullptr;
  // Written by the worker: the index of the task in progress.
  double* task_index = nullptr;
};

// Where the edit blocks run. The caller chooses (the binding: lib/backend.ts's selectBackend);
// cuda = true with CUDA unusable throws Error(CudaUnavailable) at the first edit block.
struct StreamBackend {
  bool cuda = false;
  CudaRunOptions cuda_opts;  // device memory bound per block call (memory_limit), streams
};

// Input bytes per block of the widest edit input when the caller passes block_bytes = 0: larger on
// the GPU, so one block is split into several device chunks and copies overlap kernels.
constexpr size_t kDefaultBlockBytes = size_t(8) << 20;
constexpr size_t kDefaultCudaBlockBytes = size_t(64) << 20;

// Runs the tasks in order. Throws geoedit::Error naming the tensor (and row for non-finite values).
// block_bytes 0: kDefaultCudaBlockBytes for edit blocks on the GPU, else kDefaultBlockBytes.
void run_stream(const std::vector<StreamTask>& tasks, const Params& params, const RunOptions& ro,
                size_t block_bytes, const StreamControl& ctl, const StreamBackend& backend = StreamBackend());

}  // namespace geoedit
