/* Function pointers into NumPy's BLAS (see blas.h). */
#include <stddef.h>

#include "blas.h"
#include "common.h"

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

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

/* fc_gemm_f32 / fc_gemm_f64: the call through the pointer of the BLAS's integer width. */
#define FC_GEMM(REAL, SFX, PTR)                                                                          \
    void fc_gemm_##SFX(int ta, int tb, int64_t m, int64_t n, int64_t k, const REAL *a, int64_t lda,    \
                       const REAL *b, int64_t ldb, REAL beta, REAL *c, int64_t ldc) {                  \
        const int opa = ta ? CBLAS_TRANS : CBLAS_NO_TRANS, opb = tb ? CBLAS_TRANS : CBLAS_NO_TRANS;    \
        if (fc_blas_int64)                                                                             \
            ((void (*)(int, int, int, int64_t, int64_t, int64_t, REAL, const REAL *, int64_t,          \
                       const REAL *, int64_t, REAL, REAL *, int64_t))PTR)(                             \
                CBLAS_ROW_MAJOR, opa, opb, m, n, k, 1, a, lda, b, ldb, beta, c, ldc);                  \
        else                                                                                           \
            ((void (*)(int, int, int, int, int, int, REAL, const REAL *, int, const REAL *, int, REAL,  \
                       REAL *, int))PTR)(CBLAS_ROW_MAJOR, opa, opb, (int)m, (int)n, (int)k, 1, a,      \
                                         (int)lda, b, (int)ldb, beta, c, (int)ldc);                    \
    }
FC_GEMM(float, f32, fc_sgemm)
FC_GEMM(double, f64, fc_dgemm)
#undef FC_GEMM

int fc_blas_threads_single(void) {
    if (fc_blas_get_threads == NULL || fc_blas_set_threads == NULL) return 0;
    int previous = fc_blas_get_threads();
    if (previous != 1) fc_blas_set_threads(1);
    return previous;
}

void fc_blas_threads_restore(int previous) {
    if (previous > 1 && fc_blas_set_threads != NULL) fc_blas_set_threads(previous);
}
