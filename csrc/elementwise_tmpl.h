/* Elementwise kernels for one element type (included through
 * instantiate.h): ReLU, its gradient (alone or added to another gradient) and
 * a sum, each one multithreaded pass
 * over `size` elements.  NumPy runs these on one thread, the gradient as
 * two passes (a compare into a bool array, then a product): 1.4 ms on an
 * 8 MB tensor, a residual block's gradient twice that. */

/* out = max(x, 0) as NumPy's maximum: NaN stays NaN, -0 becomes +0. */
int FN(fc_relu)(const REAL *restrict x, REAL *restrict out, int64_t size) {
    if (size < 0) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_threads_for(size)) schedule(static)
    for (int64_t k = 0; k < size; ++k) out[k] = x[k] <= 0 ? (REAL)0 : x[k];
    return FC_OK;
}

/* The ReLU gradient's mask as a factor: 1 where out > 0, else 0 (NaN too),
 * so d_out * mask keeps the reference's product (inf * 0 is NaN).  Written
 * on vectors: as scalars, GCC rewrites d_out * (out > 0) into a branch
 * around a multiply by 0, one element at a time, wherever it has no mask
 * registers (the AVX2 and SSE builds: 4.7-5.1 ms on 2M elements, AVX-512
 * 0.35). */
typedef REAL FN(evec) __attribute__((vector_size(FC_VBYTES), aligned(sizeof(REAL)), may_alias));
#if FC_REAL_IS_FLOAT
typedef int32_t FN(ebits) __attribute__((vector_size(FC_VBYTES)));
#else
typedef int64_t FN(ebits) __attribute__((vector_size(FC_VBYTES)));
#endif
#define EVEC ((int64_t)(FC_VBYTES / sizeof(REAL)))

static inline FN(evec) FN(positive_mask)(FN(evec) out) {
    const FN(evec) zero = {0}, one = zero + 1;
    return (FN(evec))((FN(ebits))(out > zero) & (FN(ebits))one);
}

/* d_x = (other +) d_out * mask(out) over whole vectors, threads splitting
 * them; the last partial vector element by element. */
static void FN(relu_grad)(const REAL *restrict d_out, const REAL *restrict out, const REAL *restrict other,
                          REAL *restrict d_x, int64_t size) {
    const int64_t vecs = size / EVEC;
#pragma omp parallel for num_threads(fc_threads_for(size)) schedule(static)
    for (int64_t v = 0; v < vecs; ++v) {
        const int64_t k = v * EVEC;
        FN(evec) g = *(const FN(evec) *)(d_out + k) * FN(positive_mask)(*(const FN(evec) *)(out + k));
        if (other != NULL) g = *(const FN(evec) *)(other + k) + g;
        *(FN(evec) *)(d_x + k) = g;
    }
    for (int64_t k = vecs * EVEC; k < size; ++k) {
        const REAL g = d_out[k] * (out[k] > 0 ? (REAL)1 : (REAL)0);
        d_x[k] = other != NULL ? other[k] + g : g;
    }
}

/* d_x = d_out * (out > 0): a product, as the reference (inf * 0 is NaN). */
int FN(fc_relu_bwd)(const REAL *restrict d_out, const REAL *restrict out, REAL *restrict d_x, int64_t size) {
    if (size < 0) return FC_ERR_SIZE;
    FN(relu_grad)(d_out, out, NULL, d_x, size);
    return FC_OK;
}

/* d_x = other + d_out * (out > 0): a residual block's input gradient, the
 * identity branch's ReLU gradient and the main branch's sum in one pass
 * (relu_bwd then add wrote and read back a whole tensor between them); the
 * same bits as those two, the sum's operands being the same. */
int FN(fc_relu_bwd_add)(const REAL *restrict d_out, const REAL *restrict out, const REAL *restrict other,
                        REAL *restrict d_x, int64_t size) {
    if (size < 0) return FC_ERR_SIZE;
    FN(relu_grad)(d_out, out, other, d_x, size);
    return FC_OK;
}

/* out = a + b; out may be a or b. */
int FN(fc_add)(const REAL *a, const REAL *b, REAL *out, int64_t size) {
    if (size < 0) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_threads_for(size)) schedule(static)
    for (int64_t k = 0; k < size; ++k) out[k] = a[k] + b[k];
    return FC_OK;
}

/* dst (planes, rows, cols) <- src (planes, h, w)[:, :rows, :cols]: the rows
 * and columns a convolution reads for the outputs the pool after it keeps
 * (layers/fused.py CroppedConv).  NumPy's copy of that strided view took
 * 0.15-0.19 ms for (64, 32, 13, 13) -> 12x12 (rows of 12, one thread). */
int FN(fc_crop_planes)(const REAL *src, REAL *dst, int64_t planes, int64_t h, int64_t w, int64_t rows,
                       int64_t cols) {
    if (planes < 0 || rows < 1 || cols < 1 || rows > h || cols > w) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_threads_for(planes * rows * cols)) schedule(static)
    for (int64_t p = 0; p < planes; ++p)
        for (int64_t y = 0; y < rows; ++y)
            memcpy(dst + (p * rows + y) * cols, src + (p * h + y) * w, sizeof(REAL) * cols);
    return FC_OK;
}

/* dst (planes, h, w) <- src (planes, rows, cols) in each plane's top-left
 * corner, zeros elsewhere: the gradient of crop_planes. */
int FN(fc_pad_planes)(const REAL *src, REAL *dst, int64_t planes, int64_t h, int64_t w, int64_t rows,
                      int64_t cols) {
    if (planes < 0 || rows < 1 || cols < 1 || rows > h || cols > w) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_threads_for(planes * h * w)) schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
        for (int64_t y = 0; y < rows; ++y) {
            REAL *d = dst + (p * h + y) * w;
            memcpy(d, src + (p * rows + y) * cols, sizeof(REAL) * cols);
            for (int64_t x = cols; x < w; ++x) d[x] = 0;
        }
        for (int64_t k = rows * w; k < h * w; ++k) dst[p * h * w + k] = 0;
    }
    return FC_OK;
}

#undef EVEC
