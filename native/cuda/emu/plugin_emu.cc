// The plugin source compiled for the CPU emulator (see cuda_runtime.h here).
#include "../plugin.cu"
