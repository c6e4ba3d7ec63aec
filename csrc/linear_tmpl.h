/* Dense layers' three products (functional.linear), for one element type
 * (included by linear.c through instantiate.h):
 *     forward          out = x @ w + bias      x (n, k), w (k, f), out (n, f)
 *     weight gradient  d_w = x^T @ d_out,  d_b = the column sums of d_out
 *     input gradient   d_x = d_out @ w^T
 *
 * Why not NumPy's matmul: it runs on OpenBLAS's own thread pool, so every
 * Dense call in a training step hands the two cores from fastconv's OpenMP
 * threads to OpenBLAS's and back (the seed network's 1600 -> 128 layer took
 * 0.30 ms forward inside a step, 0.15 ms called alone), and its kernels are
 * whatever OpenBLAS picked for the CPU (or OPENBLAS_CORETYPE says): its
 * AVX2 kernels on an AVX-512 machine run at half the machine's speed, and
 * its rounding differs from machine to machine.
 *
 * All three are one register-blocked product, c[i][j] = sum over p of
 * a(i, p) * b[p][j]: a tile of L_MR rows x L_NV vectors of columns stays in
 * registers over every p, fed per p by L_NV vector loads of a row of b and
 * L_MR broadcasts of a.  a is read through strides (x for the forward, x^T
 * for the weight gradient, d_out for the input gradient, whose b is w^T,
 * copied out first).  Each element of c is one chain of multiply-adds over
 * p in increasing order, computed by one thread: the same bits at any
 * thread count, tile or instruction set with FMA. */

#if FC_VBYTES >= 64
#define L_MR 6 /* 6 x 4 vectors: 24 accumulators of the 32 registers */
#define L_NV 4
#else
#define L_MR 6 /* 6 x 2 vectors: 12 of the 16 */
#define L_NV 2
#endif
#define LVEC ((int64_t)(FC_VBYTES / sizeof(REAL))) /* elements per vector */

typedef REAL FN(lvec) __attribute__((vector_size(FC_VBYTES), aligned(sizeof(REAL)), may_alias));

/* Where the product's operands are: a(i, p) = a[i*ars + p*acs]; row p of b
 * at b + p*ldb, readable in whole vectors up to the column count rounded up
 * to LVEC; c(i, j) = c[i*ldc + j]. */
typedef struct {
    const REAL *a;
    int64_t ars, acs;
    const REAL *b;
    int64_t ldb;
    REAL *c;
    int64_t ldc;
    const REAL *bias; /* per column j, or NULL */
    int64_t depth;    /* p runs over [0, depth) */
} FN(lprod);

/* Rows [i0, i0 + mr) x vectors [j0, j0 + nv*LVEC) of c, of which columns
 * below `cols` are stored. */
static inline __attribute__((always_inline)) void FN(ltile)(const FN(lprod) *q, int64_t i0, int64_t j0, int64_t cols,
                                                            const int mr, const int nv) {
    FN(lvec) acc[L_MR][L_NV];
    for (int i = 0; i < mr; ++i)
        for (int v = 0; v < nv; ++v) acc[i][v] = (FN(lvec)){0};
    const REAL *a = q->a + i0 * q->ars, *b = q->b + j0;
    const int64_t ars = q->ars, acs = q->acs, ldb = q->ldb;
    for (int64_t p = 0; p < q->depth; ++p) {
        FN(lvec) bv[L_NV];
        for (int v = 0; v < nv; ++v) bv[v] = *(const FN(lvec) *)(b + p * ldb + v * LVEC);
        for (int i = 0; i < mr; ++i) {
            const REAL s = a[i * ars + p * acs];
            for (int v = 0; v < nv; ++v) acc[i][v] += s * bv[v];
        }
    }
    for (int i = 0; i < mr; ++i)
        for (int v = 0; v < nv; ++v) {
            const int64_t j = j0 + v * LVEC;
            REAL *dst = q->c + (i0 + i) * q->ldc + j;
            if (j + LVEC <= cols) {
                FN(lvec) r = acc[i][v];
                if (q->bias != NULL) r += *(const FN(lvec) *)(q->bias + j);
                *(FN(lvec) *)dst = r;
                continue;
            }
            REAL lanes[LVEC];
            memcpy(lanes, &acc[i][v], sizeof lanes);
            for (int64_t e = 0; e < LVEC && j + e < cols; ++e)
                dst[e] = lanes[e] + (q->bias != NULL ? q->bias[j + e] : (REAL)0);
        }
}

/* The tile with mr and nv as constants (the compiler unrolls each). */
_Static_assert(L_MR == 6, "ltile_any has a case for each row count up to L_MR");
static void FN(ltile_any)(const FN(lprod) *q, int64_t i0, int64_t j0, int64_t cols, int mr, int nv) {
#define L_CASE(r)                                       \
    case r:                                             \
        if (nv == L_NV)                                 \
            FN(ltile)(q, i0, j0, cols, r, L_NV);        \
        else                                            \
            FN(ltile)(q, i0, j0, cols, r, 1);           \
        return;
    switch (mr) {
        L_CASE(1) L_CASE(2) L_CASE(3) L_CASE(4) L_CASE(5) L_CASE(6)
    }
#undef L_CASE
}

/* c = a @ b (+ bias) for rows [0, m) and columns [0, cols): tasks are
 * (column block, row tile), column blocks of L_NV vectors, then single
 * vectors; b must be readable in whole vectors (the callers pad the last). */
static void FN(lproduct)(const FN(lprod) *q, int64_t m, int64_t cols) {
    const int64_t vecs = (cols + LVEC - 1) / LVEC, wide = vecs / L_NV, blocks = wide + vecs % L_NV;
    const int64_t tiles = (m + L_MR - 1) / L_MR;
#pragma omp parallel for num_threads(fc_threads_for(m * cols * q->depth)) schedule(static)
    for (int64_t t = 0; t < blocks * tiles; ++t) {
        const int64_t blk = t / tiles, i0 = t % tiles * L_MR;
        const int mr = m - i0 < L_MR ? (int)(m - i0) : L_MR;
        if (blk < wide)
            FN(ltile_any)(q, i0, blk * L_NV * LVEC, cols, mr, L_NV);
        else
            FN(ltile_any)(q, i0, (wide * L_NV + blk - wide) * LVEC, cols, mr, 1);
    }
}

/* b (rows x cols, row stride ld) copied with rows rounded up to whole
 * vectors of zeros, when its last vector is partial (else b itself, *own
 * NULL); NULL when out of memory. */
static const REAL *FN(lpadded)(const REAL *b, int64_t rows, int64_t cols, int64_t ld, int64_t *ldb, REAL **own) {
    *own = NULL;
    *ldb = ld;
    if (cols % LVEC == 0) return b;
    const int64_t wide = (cols + LVEC - 1) / LVEC * LVEC;
    REAL *copy = calloc((size_t)(rows * wide), sizeof(REAL));
    if (copy == NULL) return NULL;
    for (int64_t r = 0; r < rows; ++r) memcpy(copy + r * wide, b + r * ld, sizeof(REAL) * cols);
    *own = copy;
    *ldb = wide;
    return copy;
}

/* dst (cols x ldd, the columns past rows zero) <- src (rows x cols)^T, in
 * square blocks that stay in cache on both sides. */
static void FN(ltranspose)(const REAL *restrict src, int64_t rows, int64_t cols, REAL *restrict dst, int64_t ldd) {
    enum { B = 32 };
    const int64_t rb = (rows + B - 1) / B, cb = (cols + B - 1) / B;
#pragma omp parallel for num_threads(fc_threads_for(rows * cols)) schedule(static)
    for (int64_t t = 0; t < cb * rb; ++t) {
        const int64_t c0 = t / rb * B, r0 = t % rb * B;
        const int64_t c1 = c0 + B < cols ? c0 + B : cols, r1 = r0 + B < rows ? r0 + B : rows;
        for (int64_t c = c0; c < c1; ++c) {
            for (int64_t r = r0; r < r1; ++r) dst[c * ldd + r] = src[r * cols + c];
            if (r1 == rows)
                for (int64_t r = rows; r < ldd; ++r) dst[c * ldd + r] = 0;
        }
    }
}

int FN(fc_linear_fwd)(const REAL *x, const REAL *w, const REAL *bias, REAL *out, int64_t n, int64_t k, int64_t f) {
    if (n < 1 || k < 1 || f < 1) return FC_ERR_SIZE;
    int64_t ldb;
    REAL *own;
    const REAL *b = FN(lpadded)(w, k, f, f, &ldb, &own);
    if (b == NULL) return FC_ERR_NOMEM;
    const FN(lprod) q = {x, k, 1, b, ldb, out, f, bias, k};
    FN(lproduct)(&q, n, f);
    free(own);
    return FC_OK;
}

int FN(fc_linear_bwd)(const REAL *x, const REAL *w, const REAL *d_out, REAL *d_x, REAL *d_w, REAL *d_b, int64_t n,
                      int64_t k, int64_t f) {
    if (n < 1 || k < 1 || f < 1) return FC_ERR_SIZE;
    int64_t ldb;
    REAL *own;
    const REAL *dy = FN(lpadded)(d_out, n, f, f, &ldb, &own);
    if (dy == NULL) return FC_ERR_NOMEM;
    /* d_w (k x f) = x^T @ d_out: a(i, p) = x[p*k + i] */
    const FN(lprod) qw = {x, 1, k, dy, ldb, d_w, f, NULL, n};
    FN(lproduct)(&qw, k, f);
    free(own);
    if (d_b != NULL) { /* in double, rows in order */
        double *sums = calloc((size_t)f, sizeof(double));
        if (sums == NULL) return FC_ERR_NOMEM;
        for (int64_t r = 0; r < n; ++r)
            for (int64_t j = 0; j < f; ++j) sums[j] += d_out[r * f + j];
        for (int64_t j = 0; j < f; ++j) d_b[j] = (REAL)sums[j];
        free(sums);
    }
    if (d_x == NULL) return FC_OK;
    /* d_x = d_out @ w^T, with b = w^T copied out (rows of k rounded up to
     * whole vectors).  (Computing d_x^T = w @ d_out^T instead and storing it
     * transposed scattered single elements k apart: 8x slower than NumPy on a
     * 2048 -> 10 layer.) */
    const int64_t kr = (k + LVEC - 1) / LVEC * LVEC;
    REAL *wt = fc_alloc_lines(sizeof(REAL) * (size_t)(f * kr));
    if (wt == NULL) return FC_ERR_NOMEM;
    FN(ltranspose)(w, k, f, wt, kr);
    const FN(lprod) qx = {d_out, f, 1, wt, kr, d_x, k, NULL, f};
    FN(lproduct)(&qx, n, k);
    free(wt);
    return FC_OK;
}

#undef L_MR
#undef L_NV
#undef LVEC
