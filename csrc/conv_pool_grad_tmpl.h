/* Gradients of a convolution followed by max pooling, from the pooled
 * gradient and the pool's winner indices: weights and bias for convolutions
 * with many taps (C*FH*FW in the hundreds, such as a second layer), and the
 * input gradient for any tap count.  Included by conv_maxpool_tmpl.h (it uses
 * its vblock, in_window and size check) with REAL and FN(name) defined.
 *
 * Why: max pool's gradient is nonzero only at the winners, one per window
 * (a quarter of the convolution's output for a 2x2/2 pool).  Routing it to a
 * dense d_conv and running the two backward GEMMs multiplies mostly zeros.
 * Here each pooled gradient g whose winner is output o of filter f adds
 *     d_w[f]      += g * patch(o)   (the inputs under o, and a 1 for the bias)
 *     d_patch(o)  += g * w[f]       (scattered back onto the input: col2im)
 * 4x fewer multiply-adds than the GEMMs for a 2x2/2 pool, in cache-sized
 * pieces, and the dense d_conv is never written.  Zero gradients are skipped
 * (they add nothing): a ReLU after the pool zeroes about half of them.
 *
 * Layout: each image is transposed into a zero-padded (HP, WP, C) scratch,
 * so a patch is FH*FW runs of C contiguous values, taps ordered (i, j, ch);
 * the weights are permuted to that order once per call.  Sums run over
 * WIDE_NB vector blocks of taps at a time, kept in registers.
 */

/* Vector blocks of taps summed at once: 4 accumulators in registers, and a
 * tap slice of 256 bytes per patch row (float), so one image's slice of its
 * patch table (or the filters' slice of the weights) stays in L1 while every
 * winner reads it: rows are read in data-dependent order, and from L2 the
 * loads, not the multiply-adds, were the limit. */
#define WIDE_NB 4

/* One sum of rows: dst[k] (+)= sum over e < cnt of g[e] * rows[e][off + k]
 * for the blocks k < m, adding to dst when `accumulate`. */
typedef struct {
    REAL *dst;
    const REAL *g;
    const REAL *const *rows;
    int64_t cnt;
} FN(row_sum);

/* Two row sums at once (m <= WIDE_NB blocks each): 2m independent
 * accumulator chains hide the multiply-add latency that a single sum of
 * ~25 rows waits on. */
static inline __attribute__((always_inline)) void FN(sum_rows_body)(FN(row_sum) p, FN(row_sum) q,
                                                                     int64_t off, int accumulate, const int m) {
    FN(vblock) a[WIDE_NB], b[WIDE_NB];
    FN(vblock) *da = (FN(vblock) *)p.dst, *db = (FN(vblock) *)q.dst;
    for (int k = 0; k < m; ++k) {
        a[k] = accumulate ? da[k] : (FN(vblock)){0};
        b[k] = accumulate ? db[k] : (FN(vblock)){0};
    }
    const int64_t both = p.cnt < q.cnt ? p.cnt : q.cnt;
    int64_t e = 0;
    for (; e < both; ++e) {
        const FN(vblock) *ra = (const FN(vblock) *)(p.rows[e] + off);
        const FN(vblock) *rb = (const FN(vblock) *)(q.rows[e] + off);
        const REAL ga = p.g[e], gb = q.g[e];
        for (int k = 0; k < m; ++k) {
            a[k] += ga * ra[k];
            b[k] += gb * rb[k];
        }
    }
    for (int64_t e2 = e; e2 < p.cnt; ++e2) {
        const FN(vblock) *ra = (const FN(vblock) *)(p.rows[e2] + off);
        for (int k = 0; k < m; ++k) a[k] += p.g[e2] * ra[k];
    }
    for (int64_t e2 = e; e2 < q.cnt; ++e2) {
        const FN(vblock) *rb = (const FN(vblock) *)(q.rows[e2] + off);
        for (int k = 0; k < m; ++k) b[k] += q.g[e2] * rb[k];
    }
    for (int k = 0; k < m; ++k) {
        da[k] = a[k];
        db[k] = b[k];
    }
}

/* sum_rows_body of p and q for the blocks k0 .. k0 + WIDE_NB (fewer at the
 * row's end, nb blocks in all), with the block count a constant so gcc
 * unrolls and keeps the accumulators in registers.  The dst pointers point
 * at block k0.  For a single sum, pass q with cnt 0 and a scratch dst.
 * Inlined: passed by value to a call, the two structs went through the
 * stack and their reload stalled on store forwarding (a fifth of the
 * weight gradient's time on a 32 -> 64 layer). */
static inline __attribute__((always_inline)) void FN(sum_rows)(FN(row_sum) p, FN(row_sum) q, int64_t k0, int64_t nb,
                                                              int accumulate) {
    const int64_t off = k0 * CONV_VEC;
    switch (nb - k0 < WIDE_NB ? nb - k0 : WIDE_NB) {
        case 1: FN(sum_rows_body)(p, q, off, accumulate, 1); break;
        case 2: FN(sum_rows_body)(p, q, off, accumulate, 2); break;
        case 3: FN(sum_rows_body)(p, q, off, accumulate, 3); break;
        default: FN(sum_rows_body)(p, q, off, accumulate, WIDE_NB); break;
    }
}

/* Sizes shared by the kernels below for one geometry. */
typedef struct {
    int64_t hp, wp;  /* padded image: rows, columns */
    int64_t uh, uw;  /* convolution outputs the pool reads (floor mode drops a tail) */
    int64_t taps, tp, nb; /* C*FH*FW; row length with the bias's 1, in whole blocks */
} FN(wide_geom);

static FN(wide_geom) FN(wide_sizes)(int64_t c, int64_t h, int64_t w, int64_t fh, int64_t fw, int64_t ph,
                                    int64_t pw, int64_t oh, int64_t ow, int64_t kh, int64_t kw, int64_t psh,
                                    int64_t psw, int64_t poh, int64_t pow_) {
    FN(wide_geom) g;
    g.hp = h + 2 * ph;
    g.wp = w + 2 * pw;
    g.uh = (poh - 1) * psh + kh < oh ? (poh - 1) * psh + kh : oh;
    g.uw = (pow_ - 1) * psw + kw < ow ? (pow_ - 1) * psw + kw : ow;
    g.taps = c * fh * fw;
    g.nb = (g.taps + CONV_VEC) / CONV_VEC;
    g.tp = g.nb * CONV_VEC;
    return g;
}

/* xh (HP, WP, C) <- one image (C, H, W) with a zero border of (ph, pw). */
static void FN(hwc_pad)(const REAL *restrict img, REAL *restrict xh, int64_t c, int64_t h, int64_t w,
                        int64_t ph, int64_t pw, FN(wide_geom) g) {
    memset(xh, 0, sizeof(REAL) * g.hp * g.wp * c);
    /* channels innermost: contiguous stores, the loads a plane apart --
     * 16 at once with an AVX-512 gather (the scalar loop was a fifth of the
     * weight gradient's time on a 32 -> 64 layer) */
    for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
            REAL *restrict dst = xh + ((y + ph) * g.wp + pw + x) * c;
            const REAL *restrict src = img + y * w + x;
            int64_t ch = 0;
#if defined(__AVX512F__) && FC_REAL_IS_FLOAT
            if (h * w <= INT32_MAX / 16) {
                const __m512i planes = _mm512_mullo_epi32(
                    _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                    _mm512_set1_epi32((int32_t)(h * w)));
                for (; ch + 16 <= c; ch += 16)
                    _mm512_storeu_ps(dst + ch, _mm512_i32gather_ps(planes, src + ch * h * w, 4));
            }
#endif
            for (; ch < c; ++ch) dst[ch] = src[ch * h * w];
        }
}

/* table row oy*uw + ox (rows of tp values) <- the patch of output (oy, ox),
 * taps (i, j, ch); when tp > taps, then a 1 (the bias's lane) and zeros. */
static void FN(hwc_patch_rows)(const REAL *restrict xh, REAL *restrict table, int64_t c, int64_t fh,
                               int64_t fw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, FN(wide_geom) g) {
    for (int64_t oy = 0; oy < g.uh; ++oy)
        for (int64_t ox = 0; ox < g.uw; ++ox, table += g.tp) {
            REAL *t = table;
            for (int64_t i = 0; i < fh; ++i) {
                const REAL *src = xh + ((oy * sh + i * dh) * g.wp + ox * sw) * c;
                if (dw == 1) { /* one run of fw * c values: copied as vectors (memcpy's call cost more) */
                    int64_t k = 0;
                    for (; k + CONV_VEC <= fw * c; k += CONV_VEC)
                        *(FN(vblock) *)(t + k) = *(const FN(vblock) *)(src + k);
                    for (; k < fw * c; ++k) t[k] = src[k];
                    t += fw * c;
                } else {
                    for (int64_t j = 0; j < fw; ++j, t += c) memcpy(t, src + j * dw * c, sizeof(REAL) * c);
                }
            }
            if (g.tp > g.taps) { /* a gradient table's row: the bias's 1, then zeros */
                *t++ = 1;
                for (int64_t k = g.taps + 1; k < g.tp; ++k) *t++ = 0;
            }
        }
}

/* pos[k] <- the table row (oy*uw + ox) of the winner of pooled element k of
 * one filter plane, or -1 when its index lies outside its window (counted in
 * the return value). */
static inline __attribute__((always_inline)) int64_t FN(winner_positions_body)(
    const int64_t *restrict ix, int32_t *restrict pos, int64_t ow, int64_t uw, int64_t kh, int64_t kw,
    int64_t psh, int64_t psw, int64_t poh, int64_t pow_) {
    int64_t bad = 0;
    for (int64_t py = 0; py < poh; ++py)
        for (int64_t px = 0; px < pow_; ++px) {
            int64_t oy, ox;
            const int ok = FN(in_window)(ix[py * pow_ + px], py, px, ow, kh, kw, psh, psw, &oy, &ox);
            pos[py * pow_ + px] = ok ? (int32_t)(oy * uw + ox) : -1;
            bad += !ok;
        }
    return bad;
}

/* winner_positions_body with the common 2x2/2 pool as constants. */
static int64_t FN(winner_positions)(const int64_t *restrict ix, int32_t *restrict pos, int64_t ow, int64_t uw,
                                    int64_t kh, int64_t kw, int64_t psh, int64_t psw, int64_t poh,
                                    int64_t pow_) {
    if (kh == 2 && kw == 2 && psh == 2 && psw == 2)
        return FN(winner_positions_body)(ix, pos, ow, uw, 2, 2, 2, 2, poh, pow_);
    return FN(winner_positions_body)(ix, pos, ow, uw, kh, kw, psh, psw, poh, pow_);
}

/* Weight and bias gradients (see conv_maxpool_bwd_params) for many taps.
 * A task is a fixed block of FC_WIDE_BLOCK images with its own partial sums
 * (the blocks' sums are added in block order, in double, a wave of
 * FC_WIDE_WAVE blocks at a time), so the result does not depend on the
 * thread count.  Per image: its patch table,
 * each filter's winners, then tap slice by tap slice every filter's sum. */
#define FC_WIDE_BLOCK 4
/* Blocks whose partial sums are held at once (then added to the running sum
 * in block order): bounds the scratch for any batch size, and is a constant,
 * so the result does not depend on the thread count. */
#define FC_WIDE_WAVE 64
static int FN(conv_maxpool_bwd_params_wide)(const REAL *restrict x, const REAL *restrict d_out,
                                            const REAL *restrict mask, const int64_t *restrict idx,
                                            REAL *restrict d_w, REAL *restrict d_b, const fc_conv_geom *cg,
                                            const fc_pool_geom *pg, int64_t has_mask) {
    FC_CONV_LOCALS(cg);
    FC_POOLED_LOCALS(pg);
    const FN(wide_geom) g = FN(wide_sizes)(c, h, w, fh, fw, ph, pw, oh, ow, kh, kw, psh, psw, poh, pow_);
    const int64_t pooled = poh * pow_, ft = f * g.tp;
    const int64_t blocks = (n + FC_WIDE_BLOCK - 1) / FC_WIDE_BLOCK;
    const int64_t wave = blocks < FC_WIDE_WAVE ? blocks : FC_WIDE_WAVE;
    REAL *part = fc_alloc_lines(sizeof(REAL) * wave * ft); /* per block, per filter: taps (i, j, ch), bias */
    double *sum = calloc(ft, sizeof(double));
    if (part == NULL || sum == NULL) {
        free(part);
        free(sum);
        return FC_ERR_NOMEM;
    }
    int failed = 0;
    int64_t bad = 0;
#pragma omp parallel num_threads(fc_threads_for(n * f * pooled * g.tp)) reduction(+ : bad)
    {
        REAL *xh = malloc(sizeof(REAL) * g.hp * g.wp * c);
        REAL *table = fc_alloc_lines(sizeof(REAL) * g.uh * g.uw * g.tp);
        REAL *gs = malloc(sizeof(REAL) * f * pooled);
        const REAL **rows = malloc(sizeof(REAL *) * f * pooled);
        int64_t *cnt = malloc(sizeof(int64_t) * f);
        REAL *spare = malloc(sizeof(REAL) * WIDE_NB * CONV_VEC); /* the unused half of a pair */
        int32_t *pos = malloc(sizeof(int32_t) * pooled);
        const int ok = xh && table && gs && rows && cnt && spare && pos;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
        for (int64_t b0 = 0; b0 < blocks; b0 += wave) {
            const int64_t b1 = b0 + wave < blocks ? b0 + wave : blocks;
#pragma omp for schedule(static)
            for (int64_t blk = b0; blk < b1; ++blk) {
                if (!ok) continue;
                const int64_t i0 = blk * FC_WIDE_BLOCK, i1 = i0 + FC_WIDE_BLOCK < n ? i0 + FC_WIDE_BLOCK : n;
                REAL *pb = part + (blk - b0) * ft;
                for (int64_t img = i0; img < i1; ++img) {
                    FN(hwc_pad)(x + img * c * h * w, xh, c, h, w, ph, pw, g);
                    FN(hwc_patch_rows)(xh, table, c, fh, fw, sh, sw, dh, dw, g);
                    for (int64_t fi = 0; fi < f; ++fi) {
                        const int64_t at = (img * f + fi) * pooled;
                        bad += FN(winner_positions)(idx + at, pos, ow, g.uw, kh, kw, psh, psw, poh, pow_);
                        int64_t e = fi * pooled;
                        for (int64_t k = 0; k < pooled; ++k) {
                            /* a zero, or a unit the ReLU after the pool zeroed, adds
                             * nothing: written anyway, kept by the count (no branch
                             * to mispredict on the data) */
                            const REAL gv = d_out[at + k], mv = mask[at + k]; /* mask is d_out when there is none */
                            const int keep = (pos[k] >= 0) & (gv != 0) & (!has_mask | !(mv <= 0));
                            gs[e] = gv;
                            rows[e] = table + (pos[k] >= 0 ? pos[k] : 0) * g.tp;
                            e += keep;
                        }
                        cnt[fi] = e - fi * pooled;
                    }
                    for (int64_t k0 = 0; k0 < g.nb; k0 += WIDE_NB)
                        for (int64_t fi = 0; fi < f; fi += 2) {
                            const int64_t fj = fi + 1 < f ? fi + 1 : fi; /* an odd last filter pairs with itself */
                            FN(row_sum) p = {pb + fi * g.tp + k0 * CONV_VEC, gs + fi * pooled, rows + fi * pooled,
                                             cnt[fi]};
                            FN(row_sum) q = {pb + fj * g.tp + k0 * CONV_VEC, gs + fj * pooled, rows + fj * pooled,
                                             fj > fi ? cnt[fj] : 0};
                            if (fj == fi) q.dst = spare;
                            FN(sum_rows)(p, q, k0, g.nb, img > i0);
                        }
                }
            }
            /* the wave's blocks into the running sum, in block order (after
             * the loop's barrier; the single's barrier ends the wave) */
#pragma omp single
            if (!failed)
                for (int64_t blk = b0; blk < b1; ++blk)
                    for (int64_t t = 0; t < ft; ++t) sum[t] += part[(blk - b0) * ft + t];
        }
        free(xh);
        free(table);
        free(gs);
        free(rows);
        free(cnt);
        free(spare);
        free(pos);
    }
    if (!failed) {
        for (int64_t fi = 0; fi < f; ++fi) {
            for (int64_t ch = 0; ch < c; ++ch)
                for (int64_t i = 0; i < fh; ++i)
                    for (int64_t j = 0; j < fw; ++j)
                        d_w[((fi * c + ch) * fh + i) * fw + j] = (REAL)sum[fi * g.tp + (i * fw + j) * c + ch];
            d_b[fi] = (REAL)sum[fi * g.tp + g.taps];
        }
    }
    free(part);
    free(sum);
    if (failed) return FC_ERR_NOMEM;
    return bad ? FC_ERR_INDEX : FC_OK;
}
#undef FC_WIDE_BLOCK
#undef FC_WIDE_WAVE

/* d_x (N, C, H, W) <- the input gradient of conv_maxpool from the pooled
 * gradient d_out and indices (N, F, PH, PW) and the weights.  One image per
 * task (so the result does not depend on the thread count): its winners are
 * bucketed by output position; each position's patch gradient is the sum of
 * g * (permuted filter row) over its bucket, added onto the padded (HP, WP, C)
 * scratch, which is finally transposed into d_x without its border. */
#define TRASH 8 /* a power of two */
int FN(fc_conv_maxpool_bwd_input)(const REAL *restrict d_out, const REAL *restrict mask,
                                  const int64_t *restrict idx, const REAL *restrict wt, REAL *restrict d_x,
                                  const fc_conv_geom *cg, const fc_pool_geom *pg, int64_t has_mask) {
    if (!FN(conv_pool_geom_ok)(cg, pg)) return FC_ERR_SIZE;
    if (FN(p22_applies)(cg, pg)) return FN(p22_bwd_input)(d_out, mask, idx, wt, d_x, cg, pg, has_mask);
    FC_CONV_LOCALS(cg);
    FC_POOLED_LOCALS(pg);
    const FN(wide_geom) g = FN(wide_sizes)(c, h, w, fh, fw, ph, pw, oh, ow, kh, kw, psh, psw, poh, pow_);
    const int64_t pooled = poh * pow_, positions = g.uh * g.uw;
    REAL *wperm = fc_alloc_lines(sizeof(REAL) * f * g.tp); /* filter rows, taps (i, j, ch), zero tail */
    if (wperm == NULL) return FC_ERR_NOMEM;
    for (int64_t fi = 0; fi < f; ++fi) {
        for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t i = 0; i < fh; ++i)
                for (int64_t j = 0; j < fw; ++j)
                    wperm[fi * g.tp + (i * fw + j) * c + ch] = wt[((fi * c + ch) * fh + i) * fw + j];
        for (int64_t t = g.taps; t < g.tp; ++t) wperm[fi * g.tp + t] = 0;
    }
    int failed = 0;
    int64_t bad = 0;
#pragma omp parallel num_threads(fc_threads_for(n * f * pooled * g.tp)) reduction(+ : bad)
    {
        REAL *dxh = malloc(sizeof(REAL) * g.hp * g.wp * c);
        REAL *dtab = fc_alloc_lines(sizeof(REAL) * positions * g.tp); /* patch gradients, one row per position */
        int64_t *start = malloc(sizeof(int64_t) * (positions + TRASH + 1)); /* and the buckets of what adds nothing */
        int64_t *fill = malloc(sizeof(int64_t) * (positions + TRASH));
        REAL *gs = malloc(sizeof(REAL) * f * pooled);
        const REAL **rows = malloc(sizeof(REAL *) * f * pooled);
        REAL *spare = malloc(sizeof(REAL) * WIDE_NB * CONV_VEC); /* the unused half of a pair */
        int32_t *pos = malloc(sizeof(int32_t) * f * pooled);
        const int ok = dxh && dtab && start && fill && gs && rows && spare && pos;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t img = 0; img < n; ++img) {
            if (!ok) continue;
            const REAL *gi = d_out + img * f * pooled;
            const int64_t *ii = idx + img * f * pooled;
            /* bucket the winners by output position (a stable counting sort);
             * what adds nothing -- a bad index, a zero, a unit the ReLU after
             * the pool zeroed -- goes to TRASH more buckets after the
             * positions, never summed: no branch to mispredict on the data,
             * and taking turns, so consecutive counts of discarded winners do
             * not wait on one another's increment of the same counter */
            for (int64_t r = 0; r <= positions + TRASH; ++r) start[r] = 0;
            for (int64_t fi = 0; fi < f; ++fi)
                bad += FN(winner_positions)(ii + fi * pooled, pos + fi * pooled, ow, g.uw, kh, kw, psh, psw,
                                            poh, pow_);
            const REAL *mi = mask + img * f * pooled;
            for (int64_t k = 0; k < f * pooled; ++k) {
                const int keep = (pos[k] >= 0) & (gi[k] != 0) & (!has_mask | !(mi[k] <= 0));
                pos[k] = keep ? pos[k] : (int32_t)(positions + (k & (TRASH - 1)));
                start[pos[k] + 1] += 1;
            }
            for (int64_t r = 0; r < positions + TRASH; ++r) {
                start[r + 1] += start[r];
                fill[r] = start[r];
            }
            for (int64_t fi = 0; fi < f; ++fi)
                for (int64_t k = fi * pooled; k < (fi + 1) * pooled; ++k) {
                    const int64_t e = fill[pos[k]]++;
                    gs[e] = gi[k];
                    rows[e] = wperm + fi * g.tp;
                }
            /* tap slice by tap slice (the filters' slice stays in L1), each
             * position's patch gradient: the sum over its bucket */
            for (int64_t k0 = 0; k0 < g.nb; k0 += WIDE_NB)
                for (int64_t r = 0; r < positions; r += 2) {
                    const int64_t r2 = r + 1 < positions ? r + 1 : r; /* an odd last position pairs with itself */
                    FN(row_sum) p = {dtab + r * g.tp + k0 * CONV_VEC, gs + start[r], rows + start[r],
                                     start[r + 1] - start[r]};
                    FN(row_sum) q = {dtab + r2 * g.tp + k0 * CONV_VEC, gs + start[r2], rows + start[r2],
                                     r2 > r ? start[r2 + 1] - start[r2] : 0};
                    if (r2 == r) q.dst = spare;
                    FN(sum_rows)(p, q, k0, g.nb, 0);
                }
            memset(dxh, 0, sizeof(REAL) * g.hp * g.wp * c);
            for (int64_t r = 0; r < positions; ++r) {
                if (start[r + 1] == start[r]) continue; /* no window's winner */
                const int64_t oy = r / g.uw, ox = r % g.uw;
                const REAL *src = dtab + r * g.tp;
                for (int64_t i = 0; i < fh; ++i)
                    for (int64_t j = 0; j < fw; ++j, src += c) {
                        REAL *dst = dxh + ((oy * sh + i * dh) * g.wp + ox * sw + j * dw) * c;
                        for (int64_t ch = 0; ch < c; ++ch) dst[ch] += src[ch];
                    }
            }
            REAL *dxi = d_x + img * c * h * w;
            for (int64_t ch = 0; ch < c; ++ch)
                for (int64_t y = 0; y < h; ++y) {
                    const REAL *src = dxh + ((y + ph) * g.wp + pw) * c + ch;
                    REAL *dst = dxi + (ch * h + y) * w;
                    int64_t x = 0;
#if defined(__AVX512F__) && FC_REAL_IS_FLOAT
                    /* 16 columns a gather (c apart), masked at the row's end */
                    if (w * c <= INT32_MAX) {
                        const __m512i cols = _mm512_mullo_epi32(
                            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                            _mm512_set1_epi32((int32_t)c));
                        for (; x < w; x += 16) {
                            const __mmask16 m = w - x >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (w - x)) - 1u);
                            const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, cols, src + x * c, 4);
                            _mm512_mask_storeu_ps(dst + x, m, v);
                        }
                    }
#endif
                    for (; x < w; ++x) dst[x] = src[x * c];
                }
        }
        free(dxh);
        free(dtab);
        free(start);
        free(fill);
        free(gs);
        free(rows);
        free(spare);
        free(pos);
    }
    free(wperm);
    if (failed) return FC_ERR_NOMEM;
    return bad ? FC_ERR_INDEX : FC_OK;
}

#undef WIDE_NB
#undef TRASH
