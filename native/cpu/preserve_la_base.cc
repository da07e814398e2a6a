// Preservation linear algebra (preserve_la.h), Eigen compiled for x86-64 baseline (SSE2; also the table for SimdLevel::Scalar).
// Called only after the CPU reported the features (preserve_la_for in core/preserve.cc).
#define GEOEDIT_LA_EIGEN_NS geoedit_eigen_base
#define GEOEDIT_LA_TABLE kPreserveLaBase
#define GEOEDIT_LA_NAME "base"
#include "preserve_la_impl.h"
