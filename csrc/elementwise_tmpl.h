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

/* d_x = d_out * (out > 0): a product, as the reference (inf * 0 is NaN). */
int FN(fc_relu_bwd)(const REAL *restrict d_out, const REAL *restrict out, REAL *restrict d_x, int64_t size) {
    if (size < 0) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_threads_for(size)) schedule(static)
    for (int64_t k = 0; k < size; ++k) d_x[k] = d_out[k] * (REAL)(out[k] > 0);
    return FC_OK;
}

/* d_x = other + d_out * (out > 0): a residual block's input gradient, the
 * identity branch's ReLU gradient and the main branch's sum in one pass
 * (relu_bwd then add wrote and read back a whole tensor between them); the
 * same bits as those two, the sum's operands being the same. */
int FN(fc_relu_bwd_add)(const REAL *restrict d_out, const REAL *restrict out, const REAL *restrict other,
                        REAL *restrict d_x, int64_t size) {
    if (size < 0) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_threads_for(size)) schedule(static)
    for (int64_t k = 0; k < size; ++k) d_x[k] = other[k] + d_out[k] * (REAL)(out[k] > 0);
    return FC_OK;
}

/* out = a + b; out may be a or b. */
int FN(fc_add)(const REAL *a, const REAL *b, REAL *out, int64_t size) {
    if (size < 0) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_threads_for(size)) schedule(static)
    for (int64_t k = 0; k < size; ++k) out[k] = a[k] + b[k];
    return FC_OK;
}
