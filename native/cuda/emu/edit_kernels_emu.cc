// The kernels compiled for the CPU emulator (see cuda_runtime.h here).
#include "../edit_kernels.cu"
