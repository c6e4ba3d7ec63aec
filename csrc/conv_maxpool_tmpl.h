/* A few-tap convolution (C*FH*FW small, such as a first layer on 1-channel
 * images) fused with the max pool after it, for one element type; included
 * by conv_maxpool.c with REAL and FN(name) defined.
 *
 * Why: with C*FH*FW = 9 an im2col GEMM has an inner dimension of 9, so the
 * layer is memory bound: its full-resolution output (5.5 MB for the seed
 * network's first layer) is written, pooled, and in backward a gradient of
 * that size is scattered and multiplied back.  Fused, the output plane lives
 * in a per-thread scratch and only the pooled plane and indices are
 * written; the weight gradient reads only the pooled gradient, at the winners.
 *
 * Forward: each task copies one image into a zero-padded scratch (no tap
 * needs a bounds test) and computes output rows in fixed blocks of CONV_VEC
 * elements whose accumulators stay in vector registers, in a scratch plane
 * whose rows are padded to whole blocks (no vector tails).
 *
 * Layouts: x (N, C, H, W), weights (F, C, FH, FW); pooled out, idx and d_out
 * (N, F, PH, PW); idx as max pool's (h*OW + w within the conv output plane).
 *
 * Convolutions with many taps are handled by the two templates included
 * below: conv_pool_grad_tmpl.h (winner-sparse weight and input gradients)
 * and conv_rows_tmpl.h (im2row and the pool over a GEMM's rows, for the
 * forward, whose GEMM runs in Python).
 */
#include "maxpool_plane_tmpl.h"

#define CONV_VEC ((int64_t)(FC_VBYTES / sizeof(REAL)))
/* A block of CONV_VEC elements as a GCC vector of the target's register
 * width (common.h); element alignment, so a block may start anywhere.  gcc
 * scalarised the equivalent array loops. */
typedef REAL FN(vblock) __attribute__((vector_size(FC_VBYTES), aligned(sizeof(REAL)), may_alias));

/* The block starting at src, CONV_VEC elements `step` apart. */
static inline FN(vblock) FN(load_block)(const REAL *src, int64_t step) {
    if (step == 1) return *(const FN(vblock) *)src;
    FN(vblock) v;
    for (int64_t k = 0; k < CONV_VEC; ++k) v[k] = src[k * step];
    return v;
}

/* Sizes of the per-task scratch buffers for one geometry. */
typedef struct {
    int64_t hp, wp;  /* padded image plane: rows, row length */
    int64_t owp;     /* output row length rounded up to whole blocks */
} FN(conv_scratch);

static FN(conv_scratch) FN(scratch_sizes)(int64_t h, int64_t w, int64_t fw, int64_t sw, int64_t ph,
                                          int64_t pw, int64_t dw, int64_t ow) {
    FN(conv_scratch) s;
    s.hp = h + 2 * ph;
    s.owp = (ow + CONV_VEC - 1) / CONV_VEC * CONV_VEC;
    const int64_t reach = (s.owp - 1) * sw + (fw - 1) * dw + 1; /* last column a block reads */
    s.wp = reach > w + 2 * pw ? reach : w + 2 * pw;
    return s;
}

/* xp <- image (C planes of h x w) with a zero border of (ph, pw) and zero slack. */
static void FN(pad_image)(const REAL *restrict img, REAL *restrict xp, int64_t c, int64_t h, int64_t w,
                          int64_t ph, int64_t pw, FN(conv_scratch) s) {
    memset(xp, 0, sizeof(REAL) * c * s.hp * s.wp);
    for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t y = 0; y < h; ++y)
            memcpy(xp + (ch * s.hp + y + ph) * s.wp + pw, img + (ch * h + y) * w, sizeof(REAL) * w);
}

/* plane (oh x s.owp) <- bias + correlation of the padded image with one
 * filter wf (C*FH*FW).  Four output rows at a time: four independent
 * accumulator chains keep the FMA unit busy (one chain waits on FMA latency). */
static inline __attribute__((always_inline)) void FN(conv_plane_body)(
    const REAL *restrict xp, const REAL *restrict wf, REAL bias, REAL *restrict plane, int64_t c,
    int64_t fh, int64_t fw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t oh,
    FN(conv_scratch) s) {
    const int64_t rs = sh * s.wp; /* input distance between consecutive output rows */
    int64_t oy = 0;
    for (; oy + 4 <= oh; oy += 4) {
        for (int64_t ox0 = 0; ox0 < s.owp; ox0 += CONV_VEC) {
            FN(vblock) a0 = (FN(vblock)){0} + bias, a1 = a0, a2 = a0, a3 = a0;
            for (int64_t ch = 0; ch < c; ++ch) {
                for (int64_t i = 0; i < fh; ++i) {
                    const REAL *row = xp + (ch * s.hp + oy * sh + i * dh) * s.wp + ox0 * sw;
                    for (int64_t j = 0; j < fw; ++j) {
                        const REAL wv = wf[(ch * fh + i) * fw + j];
                        const REAL *src = row + j * dw;
                        a0 += wv * FN(load_block)(src, sw);
                        a1 += wv * FN(load_block)(src + rs, sw);
                        a2 += wv * FN(load_block)(src + 2 * rs, sw);
                        a3 += wv * FN(load_block)(src + 3 * rs, sw);
                    }
                }
            }
            REAL *o = plane + oy * s.owp + ox0;
            *(FN(vblock) *)o = a0;
            *(FN(vblock) *)(o + s.owp) = a1;
            *(FN(vblock) *)(o + 2 * s.owp) = a2;
            *(FN(vblock) *)(o + 3 * s.owp) = a3;
        }
    }
    for (; oy < oh; ++oy) {
        for (int64_t ox0 = 0; ox0 < s.owp; ox0 += CONV_VEC) {
            FN(vblock) acc = (FN(vblock)){0} + bias;
            for (int64_t ch = 0; ch < c; ++ch) {
                for (int64_t i = 0; i < fh; ++i) {
                    const REAL *row = xp + (ch * s.hp + oy * sh + i * dh) * s.wp + ox0 * sw;
                    for (int64_t j = 0; j < fw; ++j)
                        acc += wf[(ch * fh + i) * fw + j] * FN(load_block)(row + j * dw, sw);
                }
            }
            *(FN(vblock) *)(plane + oy * s.owp + ox0) = acc;
        }
    }
}

/* conv_plane_body with the common geometries as compile-time constants:
 * with the loop bounds and steps known, gcc unrolls the taps and keeps
 * addresses in registers (3x faster than the generic loops). */
static void FN(conv_plane)(const REAL *restrict xp, const REAL *restrict wf, REAL bias,
                           REAL *restrict plane, int64_t c, int64_t fh, int64_t fw, int64_t sh,
                           int64_t sw, int64_t dh, int64_t dw, int64_t oh, FN(conv_scratch) s) {
    if (sh == 1 && sw == 1 && dh == 1 && dw == 1 && fh == fw && (fh == 3 || fh == 5)) {
        if (c == 1 && fh == 3) FN(conv_plane_body)(xp, wf, bias, plane, 1, 3, 3, 1, 1, 1, 1, oh, s);
        else if (c == 1) FN(conv_plane_body)(xp, wf, bias, plane, 1, 5, 5, 1, 1, 1, 1, oh, s);
        else if (fh == 3) FN(conv_plane_body)(xp, wf, bias, plane, c, 3, 3, 1, 1, 1, 1, oh, s);
        else FN(conv_plane_body)(xp, wf, bias, plane, c, 5, 5, 1, 1, 1, 1, oh, s);
        return;
    }
    FN(conv_plane_body)(xp, wf, bias, plane, c, fh, fw, sh, sw, dh, dw, oh, s);
}

/* The geometry every conv_maxpool kernel relies on: a well-formed
 * convolution (one group) whose (n, f, oh, ow) output is the pool's input,
 * pooled without padding, in floor mode. */
static int FN(conv_pool_geom_ok)(const fc_conv_geom *cg, const fc_pool_geom *pg) {
    return cg != NULL && cg->f >= 1 && cg->groups == 1 &&
           fc_check_conv_sizes(cg->n, cg->c, cg->h, cg->w, cg->kh, cg->kw, cg->sh, cg->sw, cg->ph, cg->pw,
                               cg->dh, cg->dw, cg->oh, cg->ow) == FC_OK &&
           fc_check_pool_geom(pg) == FC_OK && pg->n == cg->n && pg->c == cg->f && pg->h == cg->oh &&
           pg->w == cg->ow && pg->ph == 0 && pg->pw == 0 && pg->ceil_mode == 0;
}

/* The pool's fields under the names the fused kernels use (the
 * convolution's own stride and output size keep sh, sw, oh, ow). */
#define FC_POOLED_LOCALS(pg)                                                                       \
    __attribute__((unused)) const int64_t kh = (pg)->kh, kw = (pg)->kw, psh = (pg)->sh, psw = (pg)->sw, \
                                          poh = (pg)->oh, pow_ = (pg)->ow

#include "conv_pool22_tmpl.h"

/* out, idx (N, F, PH, PW) <- max pool (kh x kw, stride psh x psw, no padding)
 * of the convolution, which is computed one plane at a time in scratch. */
int FN(fc_conv_maxpool_fwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict b,
                            REAL *restrict out, int64_t *restrict idx, const fc_conv_geom *cg,
                            const fc_pool_geom *pg) {
    if (!FN(conv_pool_geom_ok)(cg, pg)) return FC_ERR_SIZE;
    if (FN(p22_applies)(cg, pg)) return FN(p22_fwd)(x, wt, b, out, idx, cg, pg);
    FC_CONV_LOCALS(cg);
    FC_POOLED_LOCALS(pg);
    const FN(conv_scratch) s = FN(scratch_sizes)(h, w, fw, sw, ph, pw, dw, ow);
    int failed = 0;
#pragma omp parallel num_threads(fc_threads_for(n * f * oh * ow * c * fh * fw))
    {
        REAL *xp = malloc(sizeof(REAL) * c * s.hp * s.wp);
        REAL *plane = fc_alloc_lines(sizeof(REAL) * oh * s.owp);
        if (xp == NULL || plane == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t img = 0; img < n; ++img) {
            if (xp == NULL || plane == NULL) continue;
            FN(pad_image)(x + img * c * h * w, xp, c, h, w, ph, pw, s);
            for (int64_t fi = 0; fi < f; ++fi) {
                FN(conv_plane)(xp, wt + fi * c * fh * fw, b[fi], plane, c, fh, fw, sh, sw, dh, dw, oh, s);
                const int64_t at = (img * f + fi) * poh * pow_;
                FN(maxpool_plane)(plane, s.owp, oh, ow, out + at, idx + at, kh, kw, psh, psw, 0, 0, poh, pow_);
            }
        }
        free(xp);
        free(plane);
    }
    return failed ? FC_ERR_NOMEM : FC_OK;
}

/* Whether plane index `at` lies in the window of pooled element (py, px):
 * its row by comparisons within the window (no integer division, no branch
 * on random data), then its column must fall inside the window too.
 * Sets (*oy, *ox) to its row and column. */
static inline int FN(in_window)(int64_t at, int64_t py, int64_t px, int64_t ow, int64_t kh, int64_t kw,
                                int64_t psh, int64_t psw, int64_t *oy, int64_t *ox) {
    int64_t y = py * psh;
    for (int64_t r = 1; r < kh; ++r) y += at >= (py * psh + r) * ow;
    *oy = y;
    *ox = at - y * ow;
    return *ox >= px * psw && *ox < px * psw + kw;
}

#include "conv_pool_grad_tmpl.h"
#include "conv_rows_tmpl.h"

/* table[o * tp + t] <- the padded-image value tap t reads for output o (one
 * image's im2col, transposed); then a 1 (tap `taps`: the bias's gradient
 * accumulates in that lane) and zeros up to tp, a whole number of blocks, so
 * an output's taps load as vectors. */
static void FN(patch_table)(const REAL *restrict xp, REAL *restrict table, int64_t c, int64_t fh,
                            int64_t fw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t oh,
                            int64_t ow, int64_t tp, FN(conv_scratch) s) {
    for (int64_t oy = 0; oy < oh; ++oy) {
        for (int64_t ox = 0; ox < ow; ++ox, table += tp) {
            int64_t t = 0;
            for (int64_t ch = 0; ch < c; ++ch)
                for (int64_t i = 0; i < fh; ++i) {
                    const REAL *src = xp + (ch * s.hp + oy * sh + i * dh) * s.wp + ox * sw;
                    for (int64_t j = 0; j < fw; ++j) table[t++] = src[j * dw];
                }
            table[t++] = 1;
            for (; t < tp; ++t) table[t] = 0;
        }
    }
}

/* acc[t] += sum over the pooled elements of one filter plane (g, ix) of
 * g * table[winner][t], t <= taps (the last is the bias), for rows of nb <= 2
 * blocks.  Two elements per step into two sets of accumulators: one chain
 * of multiply-adds waits on its latency.  pos is scratch for the plane's
 * winner rows.  Returns the number of bad indices. */
static inline __attribute__((always_inline)) int64_t FN(pooled_grad_body)(
    const REAL *restrict table, const REAL *restrict g, const REAL *restrict m, int64_t has_mask,
    const int64_t *restrict ix, int32_t *restrict pos, double *restrict acc, int64_t taps, const int64_t nb,
    int64_t ow, int64_t kh, int64_t kw, int64_t psh, int64_t psw, int64_t poh, int64_t pow_) {
    const int64_t tp = nb * CONV_VEC, pooled = poh * pow_;
    const int64_t bad = FN(winner_positions)(ix, pos, ow, ow, kh, kw, psh, psw, poh, pow_);
    FN(vblock) a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
    int64_t k = 0;
    for (; k + 1 < pooled; k += 2) {
        const int32_t p0 = pos[k], p1 = pos[k + 1];
        /* a bad index, or a unit the ReLU after the pool zeroed (mask <= 0), adds nothing */
        const REAL g0 = p0 >= 0 && (!has_mask || m[k] > 0) ? g[k] : 0;
        const REAL g1 = p1 >= 0 && (!has_mask || m[k + 1] > 0) ? g[k + 1] : 0;
        const FN(vblock) *r0 = (const FN(vblock) *)(table + (p0 >= 0 ? p0 : 0) * tp);
        const FN(vblock) *r1 = (const FN(vblock) *)(table + (p1 >= 0 ? p1 : 0) * tp);
        a0 += g0 * r0[0];
        b0 += g1 * r1[0];
        if (nb == 2) {
            a1 += g0 * r0[1];
            b1 += g1 * r1[1];
        }
    }
    if (k < pooled && pos[k] >= 0 && (!has_mask || m[k] > 0)) {
        const FN(vblock) *r0 = (const FN(vblock) *)(table + pos[k] * tp);
        a0 += g[k] * r0[0];
        if (nb == 2) a1 += g[k] * r0[1];
    }
    const FN(vblock) s0 = a0 + b0, s1 = a1 + b1;
    for (int64_t t = 0; t <= taps; ++t) acc[t] += t < CONV_VEC ? s0[t] : s1[t - CONV_VEC];
    return bad;
}

/* pooled_grad_body with the block count and the common 2x2/2 pool as constants. */
static int64_t FN(pooled_grad)(const REAL *restrict table, const REAL *restrict g, const REAL *restrict m,
                               int64_t has_mask, const int64_t *restrict ix, int32_t *restrict pos,
                               double *restrict acc, int64_t taps, int64_t nb, int64_t ow, int64_t kh, int64_t kw,
                               int64_t psh, int64_t psw, int64_t poh, int64_t pow_) {
    if (kh == 2 && kw == 2 && psh == 2 && psw == 2)
        return nb == 1 ? FN(pooled_grad_body)(table, g, m, has_mask, ix, pos, acc, taps, 1, ow, 2, 2, 2, 2, poh, pow_)
                       : FN(pooled_grad_body)(table, g, m, has_mask, ix, pos, acc, taps, 2, ow, 2, 2, 2, 2, poh, pow_);
    return nb == 1 ? FN(pooled_grad_body)(table, g, m, has_mask, ix, pos, acc, taps, 1, ow, kh, kw, psh, psw, poh, pow_)
                   : FN(pooled_grad_body)(table, g, m, has_mask, ix, pos, acc, taps, 2, ow, kh, kw, psh, psw, poh, pow_);
}

/* Weight and bias gradients of conv_maxpool from the pooled gradient d_out
 * (N, F, PH, PW) and the pooling indices.  Only the winners received
 * gradient, so each pooled element adds d * (the taps under its winner, and
 * a 1 for the bias): PH*PW windows per plane instead of OH*OW, one vector
 * load and FMA per block of taps from the image's patch table.  A task is a fixed block of
 * images (its table stays in cache for every filter); each block keeps its
 * own partial sums, added in block order at the end, so the result does not
 * depend on the thread count.  Sums per plane in REAL, beyond in double. */
#define FC_GRAD_BLOCK 4
/* Beyond this many vector blocks of taps, the wide kernel (patch rows from an
 * HWC copy, register-blocked sums) is faster. */
#define FC_FEW_TAP_BLOCKS 2
int FN(fc_conv_maxpool_bwd_params)(const REAL *restrict x, const REAL *restrict d_out,
                                   const REAL *restrict mask, const int64_t *restrict idx, REAL *restrict d_w,
                                   REAL *restrict d_b, const fc_conv_geom *cg, const fc_pool_geom *pg,
                                   int64_t has_mask) {
    if (!FN(conv_pool_geom_ok)(cg, pg)) return FC_ERR_SIZE;
    if (FN(p22_applies)(cg, pg)) return FN(p22_bwd_params)(x, d_out, mask, idx, d_w, d_b, cg, pg, has_mask);
    FC_CONV_LOCALS(cg);
    FC_POOLED_LOCALS(pg);
    const FN(conv_scratch) s = FN(scratch_sizes)(h, w, fw, sw, ph, pw, dw, ow);
    const int64_t taps = c * fh * fw, pooled = poh * pow_, stride = taps + 1;
    const int64_t nb = (taps + CONV_VEC) / CONV_VEC; /* vector blocks per output's taps and the 1 */
    if (nb > FC_FEW_TAP_BLOCKS)
        return FN(conv_maxpool_bwd_params_wide)(x, d_out, mask, idx, d_w, d_b, cg, pg, has_mask);
    const int64_t blocks = (n + FC_GRAD_BLOCK - 1) / FC_GRAD_BLOCK;
    double *part = calloc(blocks * f * stride, sizeof(double)); /* per block, per filter: taps, bias */
    if (part == NULL) return FC_ERR_NOMEM;
    int failed = 0;
    int64_t bad = 0;
#pragma omp parallel num_threads(fc_threads_for(n * f * pooled * nb * CONV_VEC)) reduction(+ : bad)
    {
        REAL *xp = malloc(sizeof(REAL) * c * s.hp * s.wp);
        REAL *table = fc_alloc_lines(sizeof(REAL) * oh * ow * nb * CONV_VEC);
        int32_t *pos = malloc(sizeof(int32_t) * pooled);
        const int ok = xp && table && pos;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; ++blk) {
            if (!ok) continue;
            const int64_t img_end = (blk + 1) * FC_GRAD_BLOCK < n ? (blk + 1) * FC_GRAD_BLOCK : n;
            for (int64_t img = blk * FC_GRAD_BLOCK; img < img_end; ++img) {
                FN(pad_image)(x + img * c * h * w, xp, c, h, w, ph, pw, s);
                FN(patch_table)(xp, table, c, fh, fw, sh, sw, dh, dw, oh, ow, nb * CONV_VEC, s);
                for (int64_t fi = 0; fi < f; ++fi) {
                    const int64_t at = (img * f + fi) * pooled;
                    bad += FN(pooled_grad)(table, d_out + at, mask + at, has_mask, idx + at, pos,
                                           part + (blk * f + fi) * stride, taps, nb, ow, kh, kw, psh, psw, poh,
                                           pow_);
                }
            }
        }
        free(xp);
        free(table);
        free(pos);
    }
    if (!failed) {
        for (int64_t fi = 0; fi < f; ++fi) {
            for (int64_t t = 0; t < stride; ++t) {
                double sum = 0;
                for (int64_t blk = 0; blk < blocks; ++blk) sum += part[(blk * f + fi) * stride + t];
                if (t < taps) d_w[fi * taps + t] = (REAL)sum;
                else d_b[fi] = (REAL)sum;
            }
        }
    }
    free(part);
    if (failed) return FC_ERR_NOMEM;
    return bad ? FC_ERR_INDEX : FC_OK;
}
#undef FC_GRAD_BLOCK
#undef FC_FEW_TAP_BLOCKS

#undef FC_POOLED_LOCALS
#undef CONV_VEC
