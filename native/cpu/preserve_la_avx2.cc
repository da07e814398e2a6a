// Preservation linear algebra (preserve_la.h), Eigen compiled for AVX2 + FMA, built with -mavx2 -mfma.
// Called only after the CPU reported the features (preserve_la_for in core/preserve.cc).
#define GEOEDIT_LA_EIGEN_NS geoedit_eigen_avx2
#define GEOEDIT_LA_TABLE kPreserveLaAvx2
#define GEOEDIT_LA_NAME "avx2"
#include "preserve_la_impl.h"
