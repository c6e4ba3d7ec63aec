/* Depthwise convolution (groups == channels == filters) on the direct
 * convolution's layouts, for one element type: included by
 * conv_direct_tmpl.h, whose padded / phase-plane layouts, tap offsets and
 * output placement it uses.
 *
 * Why: a depthwise layer does 9 multiply-adds per output, so it is bound by
 * memory, and a GEMM per group (M = 1, K = 9) spends most of its time in
 * overhead -- 5 GB/s where one pass over the data is the limit.  Here each
 * channel plane is read once per image, D_NV vectors of positions at a time
 * with every tap from L1.
 *
 * Forward: out[ch, p] = sum over taps k of w[ch, k] * xp[plane(ch) + off[k] + p]
 * on the input's layout (padded, or its phase planes for a stride).  Weight
 * gradient: the same sums the other way, vector accumulators per tap summed
 * over a fixed block of images (the same bits at any thread count).  Input
 * gradient, any stride: per phase (a, b) of the padded input, the taps that
 * land on it read the output gradient padded by (tq, lq) at fixed offsets,
 * and the computed phase plane is scattered sh, sw apart -- the dense
 * kernel's strided scheme with one plane per channel.
 */

/* Taps per weight-gradient pass: vector accumulators held in registers. */
#define DW_GT 8

/* out plane (pl) <- bias + the depthwise correlation of one channel's planes
 * xc with its taps' weights wk (at offsets off). */
static void FN(dw_channel)(const REAL *restrict xc, const int64_t *restrict off, int64_t taps,
                           const REAL *restrict wk, REAL bias, REAL *restrict out, const FN(dgeom) *d,
                           const FN(dplace) *pl) {
    int64_t u_lo, u_hi;
    FN(place_columns)(d, pl, &u_lo, &u_hi);
    REAL buf[D_PB] __attribute__((aligned(64)));
    for (int64_t p0 = 0; p0 < d->len; p0 += D_PB) {
        FN(dvec) acc[D_NV] = {{0}};
        for (int64_t k = 0; k < taps; ++k) {
            const REAL *xr = xc + off[k] + p0;
            const REAL wv = wk[k];
            for (int v = 0; v < D_NV; ++v) acc[v] += wv * FN(dload)(xr + v * DVEC);
        }
        memcpy(buf, acc, sizeof(buf));
        FN(emit_block)(buf, 1, 0, &bias, out, p0, d, pl, u_lo, u_hi);
    }
}

/* The input layout of geometry g (padded planes, or phase planes with a
 * stride) with the one-channel tap table off (fh*fw offsets from a
 * channel's first plane); positions: the output rows on the layout's width. */
static FN(dgeom) FN(dw_geom)(const fc_conv_geom *g, int64_t *off) {
    return FN(phase_geom)(g, off, 1, 1, 1);
}

/* xp <- image img's channels in the layout of d (zeroed: see pad_planes). */
static void FN(dw_layout)(const REAL *restrict img, REAL *restrict xp, const fc_conv_geom *g, const FN(dgeom) *d,
                          int64_t size, int zeroed) {
    FC_CONV_LOCALS(g);
    (void)n, (void)f, (void)fh, (void)fw, (void)dh, (void)dw, (void)oh, (void)ow;
    FN(split_phases)(img, xp, c, h, w, ph, pw, sh, sw, d->hp, d->wp, 1, 0, size, zeroed);
}

static int FN(depthwise_fwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict b,
                             REAL *restrict out, const fc_conv_geom *g) {
    FC_CONV_LOCALS(g);
    const int64_t taps = fh * fw;
    int64_t *off = malloc(sizeof(int64_t) * taps);
    if (off == NULL) return FC_ERR_NOMEM;
    const FN(dgeom) d = FN(dw_geom)(g, off);
    const int64_t phases = sh * sw, cplane = phases * d.hp * d.wp; /* one channel's planes */
    FN(dgeom) all = d;
    all.ci = c * phases;
    const int64_t size = FN(padded_size)(&all);
    int nomem = 0;
#pragma omp parallel num_threads(fc_threads_for(2 * n * c * d.len * taps))
    {
        REAL *xp = fc_alloc_lines(sizeof(REAL) * size);
        if (xp == NULL) {
#pragma omp atomic write
            nomem = 1;
        }
        int zeroed = 0;
        FN(dplace) place;
        FN(dense)(&place, oh, ow, 0);
#pragma omp for schedule(static)
        for (int64_t img = 0; img < n; ++img) {
            if (xp == NULL) continue;
            FN(dw_layout)(x + img * c * h * w, xp, g, &d, size, zeroed);
            zeroed = 1;
            for (int64_t ch = 0; ch < c; ++ch)
                FN(dw_channel)(xp + ch * cplane, off, taps, wt + ch * taps, b != NULL ? b[ch] : 0,
                               out + (img * c + ch) * oh * ow, &d, &place);
        }
        free(xp);
    }
    free(off);
    return nomem ? FC_ERR_NOMEM : FC_OK;
}

static int FN(depthwise_bwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict d_out,
                             REAL *restrict d_x, REAL *restrict d_w, REAL *restrict d_b, const fc_conv_geom *g) {
    FC_CONV_LOCALS(g);
    const int64_t taps = fh * fw, phases = sh * sw, hw = h * w, ohw = oh * ow;
    int64_t *off = malloc(sizeof(int64_t) * (taps + DW_GT));
    /* input gradient: taps grouped by the input phase they land on; dy padded by (tq, lq) */
    int64_t *dx_off = malloc(sizeof(int64_t) * taps), *dx_tap = malloc(sizeof(int64_t) * taps);
    int64_t *dx_first = malloc(sizeof(int64_t) * (phases + 1));
    const int64_t blocks = n < FC_GRAD_BLOCKS ? n : FC_GRAD_BLOCKS; /* from n alone (common.h) */
    double *parts = calloc((size_t)(blocks * (c * taps + c)), sizeof(double));
    if (off == NULL || dx_off == NULL || dx_tap == NULL || dx_first == NULL || parts == NULL) {
        free(off), free(dx_off), free(dx_tap), free(dx_first), free(parts);
        return FC_ERR_NOMEM;
    }
    const FN(dgeom) d = FN(dw_geom)(g, off);
    for (int64_t k = taps; k < taps + DW_GT; ++k) off[k] = 0; /* the last pass's spare taps */
    const int64_t cplane = phases * d.hp * d.wp;
    FN(dgeom) all = d;
    all.ci = c * phases;
    const int64_t xsize = FN(padded_size)(&all);
    const int64_t tq = (fh - 1) * dh / sh, lq = (fw - 1) * dw / sw;
    FN(dgeom) dx_g = FN(direct_geom)(c, 1, 1, fw, 1, dw, d.hp + tq, d.wp + lq, d.wp, 1);
    FN(set_rows)(&dx_g, d.hp); /* every phase row and column */
    const int64_t dplane = dx_g.hp * dx_g.wp, dysize = FN(padded_size)(&dx_g);
    int empty_phase = 0;
    {
        int64_t t = 0;
        for (int64_t q = 0; q < phases; ++q) {
            dx_first[q] = t;
            for (int64_t i = 0; i < fh; ++i)
                for (int64_t j = 0; j < fw; ++j) {
                    if ((i * dh) % sh != q / sw || (j * dw) % sw != q % sw) continue;
                    dx_off[t] = (tq - i * dh / sh) * dx_g.wp + lq - j * dw / sw;
                    dx_tap[t++] = i * fw + j;
                }
            empty_phase |= t == dx_first[q];
        }
        dx_first[phases] = t;
    }
    int nomem = 0;
#pragma omp parallel num_threads(fc_threads_for(6 * n * c * d.len * taps))
    {
        REAL *xp = fc_alloc_lines(sizeof(REAL) * xsize);
        REAL *dyf = fc_alloc_lines(sizeof(REAL) * (d.lr + DVEC)); /* one channel's dy on the layout */
        REAL *dyp = d_x != NULL ? fc_alloc_lines(sizeof(REAL) * dysize) : NULL;
        REAL *wphase = malloc(sizeof(REAL) * taps); /* a phase's weights of one channel */
        const int ok = xp != NULL && dyf != NULL && wphase != NULL && (d_x == NULL || dyp != NULL);
        if (!ok) {
#pragma omp atomic write
            nomem = 1;
        }
        int zeroed = 0;
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; ++blk) {
            if (!ok) continue;
            double *part = parts + blk * (c * taps + c);
            for (int64_t img = blk * n / blocks; img < (blk + 1) * n / blocks; ++img) {
                const REAL *dy = d_out + img * c * ohw;
                FN(dw_layout)(x + img * c * hw, xp, g, &d, xsize, zeroed);
                if (!zeroed) memset(dyf, 0, sizeof(REAL) * (d.lr + DVEC));
                if (d_x != NULL) FN(stack_planes)(dy, dyp, c, oh, ow, tq, lq, 1, &dx_g, zeroed);
                zeroed = 1;
                for (int64_t ch = 0; ch < c; ++ch) {
                    /* weight and bias gradients: dy on the layout's width, DW_GT taps per pass */
                    for (int64_t y = 0; y < oh; ++y)
                        memcpy(dyf + y * d.wp, dy + (ch * oh + y) * ow, sizeof(REAL) * ow);
                    const REAL *xc = xp + ch * cplane;
                    for (int64_t k0 = 0; k0 < taps; k0 += DW_GT) {
                        FN(dvec) acc[DW_GT] = {{0}};
                        for (int64_t p = 0; p < d.lr; p += DVEC) {
                            const FN(dvec) dv = FN(dload)(dyf + p);
                            for (int t = 0; t < DW_GT; ++t) acc[t] += dv * FN(dload)(xc + off[k0 + t] + p);
                        }
                        for (int t = 0; t < DW_GT && k0 + t < taps; ++t) {
                            REAL s = 0;
                            for (int64_t e = 0; e < DVEC; ++e) s += acc[t][e];
                            part[ch * taps + k0 + t] += s;
                        }
                    }
                    if (d_b != NULL) {
                        FN(dvec) acc = {0};
                        for (int64_t p = 0; p < d.lr; p += DVEC) acc += FN(dload)(dyf + p);
                        REAL s = 0;
                        for (int64_t e = 0; e < DVEC; ++e) s += acc[e];
                        part[c * taps + ch] += s;
                    }
                    if (d_x == NULL) continue;
                    /* input gradient of this channel, phase by phase */
                    REAL *dxc = d_x + (img * c + ch) * hw;
                    if (empty_phase) memset(dxc, 0, sizeof(REAL) * hw); /* pixels no tap reaches */
                    for (int64_t q = 0; q < phases; ++q) {
                        const int64_t t0 = dx_first[q], nt = dx_first[q + 1] - t0;
                        if (nt == 0) continue;
                        for (int64_t t = 0; t < nt; ++t) wphase[t] = wt[ch * taps + dx_tap[t0 + t]];
                        const FN(dplace) at = {sh, q / sw - ph, sw, q % sw - pw, h, w, 0};
                        FN(dw_channel)(dyp + ch * dplane, dx_off + t0, nt, wphase, 0, dxc, &dx_g, &at);
                    }
                }
            }
        }
        free(xp);
        free(dyf);
        free(dyp);
        free(wphase);
    }
    if (!nomem) FN(sum_blocks)(parts, blocks, c * taps, c, d_w, d_b);
    free(off), free(dx_off), free(dx_tap), free(dx_first), free(parts);
    return nomem ? FC_ERR_NOMEM : FC_OK;
}

#undef DW_GT
