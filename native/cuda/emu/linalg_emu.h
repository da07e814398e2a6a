// CPU stand-ins for the cuBLAS / cuSOLVER entry points of native/cuda/linalg.h, for the emulator
// (device memory is host memory there). Column-major, as the libraries are. Straight loops: the
// emulator checks the plugin's use of the libraries (layouts, leading dimensions, op flags, info
// codes), not their speed; results are held to the CPU reference by test/gpu/cuda-emu.test.ts.
// Included by linalg.h inside namespace geoedit_linalg (its <cmath> is included there first).

namespace emu_linalg {
inline int create(void** h) { static int dummy; *h = &dummy; return 0; }
inline int set_math(void*, int) { return 0; }
// C = alpha·op(A)·op(B) + beta·C, op(X) = X or X^T; m×n result, k inner, column-major.
inline int sgemm(void*, int ta, int tb, int m, int n, int k, const float* alpha, const float* A, int lda, const float* B,
                 int ldb, const float* beta, float* C, int ldc) {
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      float s = 0;
      for (int q = 0; q < k; ++q) {
        const float a = ta == 0 ? A[i + size_t(q) * lda] : A[q + size_t(i) * lda];
        const float b = tb == 0 ? B[q + size_t(j) * ldb] : B[j + size_t(q) * ldb];
        s += a * b;
      }
      float& c = C[i + size_t(j) * ldc];
      c = *alpha * s + (*beta == 0 ? 0.0f : *beta * c);
    }
  return 0;
}
inline int potrf_buffer(void*, int, int n, double*, int, int* lwork) { *lwork = n; return 0; }
// Lower Cholesky in place (column-major); *info = j + 1 at the first non-positive pivot.
inline int potrf(void*, int uplo, int n, double* A, int lda, double*, int, int* info) {
  if (uplo != 0) return 7;  // CUSOLVER_STATUS_NOT_SUPPORTED: the plugin asks for lower only
  *info = 0;
  for (int j = 0; j < n; ++j) {
    double d = A[j + size_t(j) * lda];
    for (int q = 0; q < j; ++q) d -= A[j + size_t(q) * lda] * A[j + size_t(q) * lda];
    if (!(d > 0)) { *info = j + 1; return 0; }
    d = std::sqrt(d);
    A[j + size_t(j) * lda] = d;
    for (int i = j + 1; i < n; ++i) {
      double s = A[i + size_t(j) * lda];
      for (int q = 0; q < j; ++q) s -= A[i + size_t(q) * lda] * A[j + size_t(q) * lda];
      A[i + size_t(j) * lda] = s / d;
    }
  }
  return 0;
}
// Solves L L^T X = B in place for nrhs columns, L from potrf (lower).
inline int potrs(void*, int uplo, int n, int nrhs, const double* A, int lda, double* B, int ldb, int* info) {
  if (uplo != 0) return 7;
  *info = 0;
  for (int c = 0; c < nrhs; ++c) {
    double* b = B + size_t(c) * ldb;
    for (int i = 0; i < n; ++i) {
      double s = b[i];
      for (int q = 0; q < i; ++q) s -= A[i + size_t(q) * lda] * b[q];
      b[i] = s / A[i + size_t(i) * lda];
    }
    for (int i = n - 1; i >= 0; --i) {
      double s = b[i];
      for (int q = i + 1; q < n; ++q) s -= A[q + size_t(i) * lda] * b[q];
      b[i] = s / A[i + size_t(i) * lda];
    }
  }
  return 0;
}
}  // namespace emu_linalg

inline void load(Api& A) {
  A.blas_create = emu_linalg::create;
  A.blas_set_math = emu_linalg::set_math;
  A.sgemm = emu_linalg::sgemm;
  A.solver_create = emu_linalg::create;
  A.potrf_buffer = emu_linalg::potrf_buffer;
  A.potrf = emu_linalg::potrf;
  A.potrs = emu_linalg::potrs;
  A.libs = "emulator stand-ins for cuBLAS + cuSOLVER";
}
