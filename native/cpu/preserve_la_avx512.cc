// Preservation linear algebra (preserve_la.h), Eigen compiled for AVX-512 (F, BW, VL, DQ) + FMA, built with their flags.
// Called only after the CPU reported the features (preserve_la_for in core/preserve.cc).
#define GEOEDIT_LA_EIGEN_NS geoedit_eigen_avx512
#define GEOEDIT_LA_TABLE kPreserveLaAvx512
#define GEOEDIT_LA_NAME "avx512"
#include "preserve_la_impl.h"
