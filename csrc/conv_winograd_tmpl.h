/* Winograd F(2x2, 3x3) convolution for one element type (included by
 * conv_winograd.c).  Each 2x2 block of outputs (a tile) comes from a 4x4
 * block of input: in the transformed domain the 3x3 correlation becomes 16
 * products per (filter, channel) instead of 36, so the work is 16 GEMMs of
 * (filters x channels) @ (channels x tiles), 2.25x fewer multiplies than
 * the direct convolution, plus the transforms (additions only):
 *
 *   V = B^T d B    (input tile d, 4x4)       B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   U = G g G^T    (filter g, 3x3 -> 4x4)    G   = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
 *   Y = A^T M A    (M = sum over channels of U * V elementwise; Y 2x2)
 *                                            A^T = [1 1 1 0; 0 1 -1 -1]
 *
 * Tiles are processed in blocks of whole images whose transformed input and
 * products stay in L2 (FC_WINO_BLOCK_BYTES); one single-threaded BLAS GEMM
 * per block and transformed position, one block per OpenMP task.  The
 * input gradient is the same computation on d_out, with the filters turned
 * by 180 degrees and filters and channels swapped, and padding 2 - p. */

/* U[xi][o][i] (16 x co x ci): the transformed filters, computed in double.
 * flip = 0: filter (o, i) is wt[o][i] (wt is (co, ci, 3, 3)); flip = 1: it is
 * wt[i][o] turned by 180 degrees (wt is (ci, co, 3, 3): the input gradient). */
static void FN(wino_filters)(const REAL *restrict wt, REAL *restrict U, int64_t co, int64_t ci, int64_t flip) {
    for (int64_t o = 0; o < co; ++o)
        for (int64_t i = 0; i < ci; ++i) {
            double g[3][3], t[4][3];
            for (int r = 0; r < 3; ++r)
                for (int s = 0; s < 3; ++s)
                    g[r][s] = flip ? wt[(i * co + o) * 9 + (2 - r) * 3 + (2 - s)] : wt[(o * ci + i) * 9 + r * 3 + s];
            for (int s = 0; s < 3; ++s) { /* t = G g */
                t[0][s] = g[0][s];
                t[1][s] = 0.5 * (g[0][s] + g[1][s] + g[2][s]);
                t[2][s] = 0.5 * (g[0][s] - g[1][s] + g[2][s]);
                t[3][s] = g[2][s];
            }
            for (int r = 0; r < 4; ++r) { /* U = t G^T */
                REAL *u = U + (r * 4) * co * ci + o * ci + i;
                const int64_t step = co * ci; /* from position (r, s) to (r, s + 1) */
                u[0 * step] = (REAL)t[r][0];
                u[1 * step] = (REAL)(0.5 * (t[r][0] + t[r][1] + t[r][2]));
                u[2 * step] = (REAL)(0.5 * (t[r][0] - t[r][1] + t[r][2]));
                u[3 * step] = (REAL)t[r][2];
            }
        }
}

/* The plane layout of the transforms: a plane of th x tw tiles is handled
 * at once, its input split into four quarter planes (even / odd rows x even /
 * odd columns of the padded input, (th + 1) x (tw + 1) each), so that every
 * step of both transforms is a unit-stride loop over the plane's tiles --
 * loops over one tile row were too short to vectorise on small maps. */

/* V[xi][t] (t = ty * tw + tx; v, stride xi_step between positions) for every
 * tile of channel plane p (h x w), padded by (ph, pw).  scr: wino_scratch values. */
static void FN(wino_input_plane)(const REAL *restrict p, int64_t h, int64_t w, int64_t ph, int64_t pw,
                                 int64_t th, int64_t tw, REAL *restrict scr, REAL *restrict v, int64_t xi_step) {
    const int64_t qw = tw + 1, qs = (th + 1) * qw, rs = th * qw, rw = 2 * qw;
    REAL *q = scr, *row = q + 4 * qs, *rr = row + rw; /* quarters [a][b], a padded row, rows of B^T d */
    for (int64_t u = 0; u <= th; ++u)
        for (int a = 0; a < 2; ++a) {
            const int64_t y = 2 * u + a - ph;
            memset(row, 0, sizeof(REAL) * rw);
            if (y >= 0 && y < h && pw < rw) memcpy(row + pw, p + y * w, sizeof(REAL) * (w < rw - pw ? w : rw - pw));
            REAL *restrict even = q + (2 * a) * qs + u * qw, *restrict odd = q + (2 * a + 1) * qs + u * qw;
            for (int64_t k = 0; k < qw; ++k) {
                even[k] = row[2 * k];
                odd[k] = row[2 * k + 1];
            }
        }
    /* B^T d, row r, column parity b: over the flat index ty * qw + v; input
     * rows 0..3 of a tile are quarter (0, b) at u = ty, (1, b) at ty,
     * (0, b) at ty + 1, (1, b) at ty + 1 */
    for (int b = 0; b < 2; ++b) {
        const REAL *restrict d0 = q + b * qs, *restrict d1 = q + (2 + b) * qs;
        const REAL *restrict d2 = d0 + qw, *restrict d3 = d1 + qw;
        REAL *restrict r0 = rr + (0 * 2 + b) * rs, *restrict r1 = rr + (1 * 2 + b) * rs;
        REAL *restrict r2 = rr + (2 * 2 + b) * rs, *restrict r3 = rr + (3 * 2 + b) * rs;
        for (int64_t k = 0; k < rs; ++k) {
            r0[k] = d0[k] - d2[k];
            r1[k] = d1[k] + d2[k];
            r2[k] = d2[k] - d1[k];
            r3[k] = d1[k] - d3[k];
        }
    }
    /* (B^T d) B: tile column j is parity j % 2 at v = tx + j / 2 */
    for (int r = 0; r < 4; ++r) {
        REAL *restrict v0 = v + (4 * r) * xi_step, *restrict v1 = v0 + xi_step;
        REAL *restrict v2 = v1 + xi_step, *restrict v3 = v2 + xi_step;
        for (int64_t ty = 0; ty < th; ++ty) {
            const REAL *restrict e = rr + (r * 2) * rs + ty * qw, *restrict o = rr + (r * 2 + 1) * rs + ty * qw;
            const int64_t t = ty * tw;
            for (int64_t tx = 0; tx < tw; ++tx) {
                v0[t + tx] = e[tx] - e[tx + 1];
                v1[t + tx] = o[tx] + e[tx + 1];
                v2[t + tx] = e[tx + 1] - o[tx];
                v3[t + tx] = o[tx] - o[tx + 1];
            }
        }
    }
}

/* Output plane q (oh x ow) from M[xi][t] of its th x tw tiles (m, stride
 * xi_step between positions): Y = A^T M A + bias, cut at (oh, ow).
 * scr: wino_scratch values. */
static void FN(wino_output_plane)(const REAL *restrict m, int64_t xi_step, int64_t th, int64_t tw, REAL bias,
                                  REAL *restrict q, int64_t oh, int64_t ow, REAL *restrict scr) {
    const int64_t T = th * tw;
    REAL *a = scr, *y = a + 8 * T, *row = y + 4 * T; /* A^T M [s][row]; Y [row][col]; one output row */
    for (int s = 0; s < 4; ++s) {
        const REAL *restrict m0 = m + s * xi_step, *restrict m1 = m + (4 + s) * xi_step;
        const REAL *restrict m2 = m + (8 + s) * xi_step, *restrict m3 = m + (12 + s) * xi_step;
        REAL *restrict a0 = a + (2 * s) * T, *restrict a1 = a0 + T;
        for (int64_t t = 0; t < T; ++t) {
            a0[t] = m0[t] + m1[t] + m2[t];
            a1[t] = m1[t] - m2[t] - m3[t];
        }
    }
    for (int i = 0; i < 2; ++i) {
        const REAL *restrict c0 = a + i * T, *restrict c1 = a + (2 + i) * T;
        const REAL *restrict c2 = a + (4 + i) * T, *restrict c3 = a + (6 + i) * T;
        REAL *restrict y0 = y + (2 * i) * T, *restrict y1 = y0 + T;
        for (int64_t t = 0; t < T; ++t) {
            y0[t] = c0[t] + c1[t] + c2[t] + bias;
            y1[t] = c1[t] - c2[t] - c3[t] + bias;
        }
    }
    for (int64_t oy = 0; oy < oh; ++oy) {
        const REAL *restrict y0 = y + (2 * (oy % 2)) * T + (oy / 2) * tw, *restrict y1 = y0 + T;
        for (int64_t tx = 0; tx < tw; ++tx) {
            row[2 * tx] = y0[tx];
            row[2 * tx + 1] = y1[tx];
        }
        memcpy(q + oy * ow, row, sizeof(REAL) * ow);
    }
}

/* Values of scratch both plane transforms need. */
static int64_t FN(wino_scratch)(int64_t th, int64_t tw) {
    const int64_t in = 4 * (th + 1) * (tw + 1) + 2 * (tw + 1) + 8 * th * (tw + 1);
    const int64_t out = 12 * th * tw + 2 * tw;
    return in > out ? in : out;
}

/* out (n, co, oh, ow) = the 3x3 correlation of in (n, ci, h, w), padded by
 * (ph, pw), with the transformed filters U, + bias (may be NULL).  One task
 * per block of whole images. */
static int FN(wino_run)(const REAL *restrict in, const REAL *restrict U, const REAL *restrict bias,
                        REAL *restrict out, int64_t n, int64_t ci, int64_t co, int64_t h, int64_t w, int64_t ph,
                        int64_t pw, int64_t oh, int64_t ow) {
    const int64_t th = (oh + 1) / 2, tw = (ow + 1) / 2, T = th * tw;
    int64_t per_block = FC_WINO_BLOCK_BYTES / (16 * (ci + co) * (int64_t)sizeof(REAL) * T); /* images */
    if (per_block < 1) per_block = 1;
    /* enough blocks for the threads to share them evenly -- a count fixed
     * in advance, not the thread count: the GEMMs' shapes, and so the bits,
     * are the same on any number of threads */
    if (n / per_block < FC_WINO_MIN_BLOCKS) per_block = n / FC_WINO_MIN_BLOCKS > 0 ? n / FC_WINO_MIN_BLOCKS : 1;
    const int64_t blocks = (n + per_block - 1) / per_block, tb = per_block * T; /* tiles per block */
    int nomem = 0;
    const int blas_threads = fc_blas_threads_single();
#pragma omp parallel num_threads(fc_threads_for(16 * n * T * ci * co))
    {
        REAL *v = fc_alloc_lines(sizeof(REAL) * 16 * ci * tb);
        REAL *m = fc_alloc_lines(sizeof(REAL) * 16 * co * tb);
        REAL *scr = fc_alloc_lines(sizeof(REAL) * FN(wino_scratch)(th, tw));
        if (v == NULL || m == NULL || scr == NULL) {
#pragma omp atomic write
            nomem = 1;
        }
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; ++blk) {
            if (v == NULL || m == NULL || scr == NULL) continue;
            const int64_t i0 = blk * per_block, i1 = i0 + per_block < n ? i0 + per_block : n;
            const int64_t len = (i1 - i0) * T; /* tiles in this block */
            for (int64_t img = i0; img < i1; ++img)
                for (int64_t i = 0; i < ci; ++i)
                    FN(wino_input_plane)(in + (img * ci + i) * h * w, h, w, ph, pw, th, tw, scr,
                                         v + i * tb + (img - i0) * T, ci * tb);
            for (int xi = 0; xi < 16; ++xi)
                FN(fc_gemm)(0, 0, co, len, ci, U + xi * co * ci, ci, v + xi * ci * tb, tb, 0, m + xi * co * tb, tb);
            for (int64_t img = i0; img < i1; ++img)
                for (int64_t o = 0; o < co; ++o)
                    FN(wino_output_plane)(m + o * tb + (img - i0) * T, co * tb, th, tw, bias ? bias[o] : 0,
                                          out + (img * co + o) * oh * ow, oh, ow, scr);
        }
        free(v);
        free(m);
        free(scr);
    }
    fc_blas_threads_restore(blas_threads);
    return nomem ? FC_ERR_NOMEM : FC_OK;
}

/* wino_run with the filters wt transformed first (flip as wino_filters). */
static int FN(wino_conv)(const REAL *restrict in, const REAL *restrict wt, int64_t flip, const REAL *restrict bias,
                         REAL *restrict out, int64_t n, int64_t ci, int64_t co, int64_t h, int64_t w, int64_t ph,
                         int64_t pw, int64_t oh, int64_t ow) {
    REAL *U = malloc(sizeof(REAL) * 16 * co * ci);
    if (U == NULL) return FC_ERR_NOMEM;
    FN(wino_filters)(wt, U, co, ci, flip);
    const int run = FN(wino_run)(in, U, bias, out, n, ci, co, h, w, ph, pw, oh, ow);
    free(U);
    return run;
}

int FN(fc_conv2d_winograd_fwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict b,
                               REAL *restrict out, const fc_conv_geom *g) {
    const int status = fc_wino_check(g);
    if (status != FC_OK) return status;
    return FN(wino_conv)(x, wt, 0, b, out, g->n, g->c, g->f, g->h, g->w, g->ph, g->pw, g->oh, g->ow);
}

int FN(fc_conv2d_winograd_bwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict d_out,
                               REAL *restrict d_x, REAL *restrict d_w, REAL *restrict d_b, const fc_conv_geom *g) {
    const int status = fc_wino_check(g);
    if (status != FC_OK) return status;
    /* the weight (and bias) gradient: the direct kernel's */
    const int direct = FN(fc_conv2d_direct_bwd)(x, wt, d_out, NULL, d_w, d_b, g);
    if (direct != FC_OK || d_x == NULL) return direct;
    /* the input gradient: d_out correlated with the turned filters, channels and filters swapped */
    return FN(wino_conv)(d_out, wt, 1, NULL, d_x, g->n, g->f, g->c, g->oh, g->ow, 2 - g->ph, 2 - g->pw, g->h, g->w);
}
