/* GEMM through the BLAS NumPy already loaded (not part of the cffi interface).
 *
 * fastconv links no BLAS of its own: at import, Python finds NumPy's OpenBLAS
 * (fastconv/_blas_symbols.py) and hands its cblas_?gemm and thread-count
 * functions to fc_set_blas (blas.c).  Until then, or when none was found,
 * fc_blas_ready() is 0 and the implicit-GEMM convolution is not used. */
#ifndef FASTCONV_BLAS_H
#define FASTCONV_BLAS_H
#include <stdint.h>

int fc_blas_ready(void);

/* Row-major C = A' B' + beta C with A' = A or A^T (ta), B' likewise:
 * C (m x n), A' (m x k), B' (k x n). */
void fc_gemm_f32(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
void fc_gemm_f64(int ta, int tb, int64_t m, int64_t n, int64_t k, const double *a, int64_t lda,
                 const double *b, int64_t ldb, double beta, double *c, int64_t ldc);

/* The convolution kernels run one single-threaded GEMM per OpenMP task: BLAS
 * threads inside those tasks would only fight them for the cores.  Returns
 * the BLAS thread count to give back to fc_blas_threads_restore. */
int fc_blas_threads_single(void);
void fc_blas_threads_restore(int previous);
#endif
