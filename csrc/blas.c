/* Function pointers into NumPy's BLAS (see blas.h). */
#include <stddef.h>

#include "blas.h"
#include "common.h"

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

/* The two integer widths a CBLAS is built with: LP64 (int) and ILP64 (int64_t). */
typedef void (*sgemm32_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int,
                           float, float *, int);
typedef void (*sgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                           const float *, int64_t, float, float *, int64_t);
typedef void (*dgemm32_fn)(int, int, int, int, int, int, double, const double *, int, const double *, int,
                           double, double *, int);
typedef void (*dgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, double, const double *, int64_t,
                           const double *, int64_t, double, double *, int64_t);

static void *fc_sgemm, *fc_dgemm;
static int fc_blas_int64;
static int (*fc_blas_get_threads)(void);
static void (*fc_blas_set_threads)(int);

int fc_set_blas(void *sgemm, void *dgemm, void *get_threads, void *set_threads, int int64_ints) {
    fc_sgemm = fc_dgemm = NULL;  /* not ready while the check below runs */
    if (sgemm == NULL || dgemm == NULL) return FC_OK;  /* detach */
    fc_blas_int64 = int64_ints != 0;
    fc_blas_get_threads = (int (*)(void))get_threads;
    fc_blas_set_threads = (void (*)(int))set_threads;
    fc_sgemm = sgemm;
    fc_dgemm = dgemm;
    /* A product whose answer is known: a mismatch (a wrong integer width,
     * say) detaches the BLAS rather than letting a convolution use it. */
    const float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, -1, 2, 0.5f, 1};
    float c[4] = {0, 0, 0, 0};
    const double ad[6] = {1, 2, 3, 4, 5, 6}, bd[6] = {1, 0, -1, 2, 0.5, 1};
    double cd[4] = {0, 0, 0, 0};
    fc_gemm_f32(0, 0, 2, 2, 3, a, 3, b, 2, 0.0f, c, 2);
    fc_gemm_f64(0, 0, 2, 2, 3, ad, 3, bd, 2, 0.0, cd, 2);
    /* [[1,2,3],[4,5,6]] @ [[1,0],[-1,2],[0.5,1]] = [[0.5,7],[2,16]] */
    if (c[0] != 0.5f || c[1] != 7.0f || c[2] != 2.0f || c[3] != 16.0f ||
        cd[0] != 0.5 || cd[1] != 7.0 || cd[2] != 2.0 || cd[3] != 16.0) {
        fc_sgemm = fc_dgemm = NULL;
        return FC_ERR_SIZE;
    }
    return FC_OK;
}

int fc_blas_ready(void) { return fc_sgemm != NULL && fc_dgemm != NULL; }

void fc_gemm_f32(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    const int opa = ta ? CBLAS_TRANS : CBLAS_NO_TRANS, opb = tb ? CBLAS_TRANS : CBLAS_NO_TRANS;
    if (fc_blas_int64)
        ((sgemm64_fn)fc_sgemm)(CBLAS_ROW_MAJOR, opa, opb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    else
        ((sgemm32_fn)fc_sgemm)(CBLAS_ROW_MAJOR, opa, opb, (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b,
                               (int)ldb, beta, c, (int)ldc);
}

void fc_gemm_f64(int ta, int tb, int64_t m, int64_t n, int64_t k, const double *a, int64_t lda,
                 const double *b, int64_t ldb, double beta, double *c, int64_t ldc) {
    const int opa = ta ? CBLAS_TRANS : CBLAS_NO_TRANS, opb = tb ? CBLAS_TRANS : CBLAS_NO_TRANS;
    if (fc_blas_int64)
        ((dgemm64_fn)fc_dgemm)(CBLAS_ROW_MAJOR, opa, opb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc);
    else
        ((dgemm32_fn)fc_dgemm)(CBLAS_ROW_MAJOR, opa, opb, (int)m, (int)n, (int)k, 1.0, a, (int)lda, b,
                               (int)ldb, beta, c, (int)ldc);
}

int fc_blas_threads_single(void) {
    if (fc_blas_get_threads == NULL || fc_blas_set_threads == NULL) return 0;
    int previous = fc_blas_get_threads();
    if (previous != 1) fc_blas_set_threads(1);
    return previous;
}

void fc_blas_threads_restore(int previous) {
    if (previous > 1 && fc_blas_set_threads != NULL) fc_blas_set_threads(previous);
}
