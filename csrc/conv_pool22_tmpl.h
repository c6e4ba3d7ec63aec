/* A few-tap convolution (stride 1, no dilation) fused with a 2x2/2 max pool,
 * vectorised across pooled columns: forward, weight and input gradients.
 * Included by conv_maxpool_tmpl.h (its vblock, CONV_VEC, geometry checks)
 * with REAL and FN(name) defined; its kernels call these first.
 *
 * Why: the plane-by-plane kernels compute a filter's whole output plane,
 * then pool it element by element, and the winner-sparse gradients decode
 * each winner's index and gather its patch from a per-image table: on the
 * guides' first layer (1 -> 32 channels, 28x28) the weight gradient of ~350k
 * winners took 0.8 ms, the forward 0.65 ms.  Here CONV_VEC neighbouring
 * pooled columns px are one vector: window position (dy, dx) of px reads
 * padded input column 2*px + dx + j, so each padded row is split into its
 * even and odd columns ("phases", q = (dx + j) & 1, column px + (dx + j) / 2)
 * and every tap of every window position is a contiguous load.  Forward:
 * the four positions' sums, then the max and its index in registers.
 * Gradients: the pooled gradient goes to the lane of the window position
 * that won (multiplied by 0 in the other three), i.e. the dense gradient of
 * the reference without writing it; a multiply by 0 also gives the
 * reference's NaN where a weight or input is not finite.
 *
 * Cells: window position (dy, dx) and tap (i, j) read input cell
 * (u, v) = (dy + i, dx + j) of the (KH + 1) x (KW + 1) cells under a 2x2
 * window's four patches, so a pooled vector loads each cell once.
 */

#if FC_REAL_IS_FLOAT
typedef int32_t FN(lane_int);
#else
typedef int64_t FN(lane_int);
#endif
/* The integer vector of a vblock's lane width (what its comparisons give). */
typedef FN(lane_int) FN(iblock) __attribute__((vector_size(FC_VBYTES), aligned(sizeof(REAL)), may_alias));

/* CONV_VEC int64 lanes (wider than a register for float: two of them). */
typedef int64_t FN(idx_block) __attribute__((vector_size(CONV_VEC * 8), aligned(8), may_alias));

/* Largest kernel side the cell arrays below hold. */
#define P22_MAX_K 5
#define P22_MAX_CELLS ((P22_MAX_K + 1) * (P22_MAX_K + 1))
/* At most this many taps (C*KH*KW; 3 x 5 x 5, LeNet's first layer): the
 * gradients do the dense work of the four window positions, which the
 * winner-sparse kernels beat when a patch is long (a second layer's hundreds
 * of taps).  CNN measures this path against the plain layers per shape. */
#define P22_MAX_TAPS 75

/* Whether the phase kernels take this (checked) geometry. */
static int FN(p22_applies)(const fc_conv_geom *cg, const fc_pool_geom *pg) {
    return cg->sh == 1 && cg->sw == 1 && cg->dh == 1 && cg->dw == 1 && cg->kh <= P22_MAX_K &&
           cg->kw <= P22_MAX_K && cg->c * cg->kh * cg->kw <= P22_MAX_TAPS && pg->kh == 2 && pg->kw == 2 &&
           pg->sh == 2 && pg->sw == 2;
}

typedef struct {
    int64_t hp;  /* padded rows */
    int64_t wq;  /* columns of a phase row: the widest vector read fits */
    int64_t pwv; /* pooled row length rounded up to whole vectors */
} FN(p22_geom);

static FN(p22_geom) FN(p22_sizes)(int64_t h, int64_t w, int64_t ph, int64_t pw, int64_t fw, int64_t pow_) {
    FN(p22_geom) g;
    g.hp = h + 2 * ph;
    g.pwv = (pow_ + CONV_VEC - 1) / CONV_VEC * CONV_VEC;
    g.wq = g.pwv + fw / 2; /* the last lane's column px + (1 + fw - 1) / 2 */
    const int64_t half = (w + 2 * pw + 1) / 2; /* and every padded column (the input gradient is copied out of them) */
    g.wq = g.wq > half ? g.wq : half;
    return g;
}

/* Phase row (ch, q, r) of the padded image: ((ch * 2 + q) * hp + r) * wq. */
static inline int64_t FN(p22_row)(int64_t ch, int64_t q, int64_t r, FN(p22_geom) g) {
    return ((ch * 2 + q) * g.hp + r) * g.wq;
}

/* xq <- one image (C, H, W), zero-padded by (ph, pw), split into phases;
 * columns past the padded image are 0. */
static void FN(p22_phases)(const REAL *restrict img, REAL *restrict xq, int64_t c, int64_t h, int64_t w,
                           int64_t ph, int64_t pw, FN(p22_geom) g) {
    for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t r = 0; r < g.hp; ++r) {
            REAL *even = xq + FN(p22_row)(ch, 0, r, g), *odd = xq + FN(p22_row)(ch, 1, r, g);
            const int64_t y = r - ph;
            if (y < 0 || y >= h) {
                memset(even, 0, sizeof(REAL) * g.wq);
                memset(odd, 0, sizeof(REAL) * g.wq);
                continue;
            }
            const REAL *src = img + (ch * h + y) * w;
            for (int64_t col = 0; col < g.wq; ++col) {
                const int64_t xe = 2 * col - pw, xo = xe + 1;
                even[col] = xe >= 0 && xe < w ? src[xe] : 0;
                odd[col] = xo >= 0 && xo < w ? src[xo] : 0;
            }
        }
}

/* Lanes where v beats best in max pooling's scan: larger, or the first NaN. */
static inline FN(iblock) FN(p22_beats)(FN(vblock) v, FN(vblock) best) {
    return (v > best) | ((v != v) & (best == best));
}

/* when ? a : b, lane by lane (when: all ones or zeros). */
static inline FN(vblock) FN(p22_pick)(FN(iblock) when, FN(vblock) a, FN(vblock) b) {
    return (FN(vblock))(((FN(iblock))a & when) | ((FN(iblock))b & ~when));
}

/* a[r][2 * dy + dx] <- bias + the correlation at window position (dy, dx)
 * of pooled rows py + r (r < R), columns v0 .. v0 + CONV_VEC: R rows at
 * once give 4R independent chains of multiply-adds (four wait on their
 * latency with many taps: LeNet's 75), and each input vector is loaded once
 * for all the taps that read it (a load per multiply-add, most of them
 * across two cache lines, had halved the rate). */
static inline __attribute__((always_inline)) void FN(p22_window_sums)(
    const REAL *restrict xq, const REAL *restrict wf, REAL bias, int64_t c, const int64_t fh, const int64_t fw,
    int64_t py, int64_t v0, FN(p22_geom) g, const int R, FN(vblock) a[2][4]) {
    for (int r = 0; r < R; ++r)
        for (int k = 0; k < 4; ++k) a[r][k] = (FN(vblock)){0} + bias;
    FN(vblock) cells[P22_MAX_K + 1];
    for (int64_t ch = 0; ch < c; ++ch)
        /* input row 2 * py + u at a time: its fw + 1 cells loaded once feed
         * every (row r, dy, tap i) with 2 * r + dy + i == u */
        for (int64_t u = 0; u <= fh + 2 * (R - 1); ++u) { /* rows 2 * py .. 2 * (py + R - 1) + 1 + fh - 1 */
            for (int64_t v = 0; v <= fw; ++v)
                cells[v] = *(const FN(vblock) *)(xq + FN(p22_row)(ch, v & 1, 2 * py + u, g) + v0 + (v >> 1));
            for (int r = 0; r < R; ++r)
                for (int dy = 0; dy < 2; ++dy) {
                    const int64_t i = u - 2 * r - dy;
                    if (i < 0 || i >= fh) continue;
                    for (int64_t j = 0; j < fw; ++j) {
                        const REAL wv = wf[(ch * fh + i) * fw + j];
                        for (int dx = 0; dx < 2; ++dx) a[r][2 * dy + dx] += wv * cells[dx + j];
                    }
                }
        }
}

/* out, idx of pooled row py, columns v0 .. v0 + CONV_VEC <- the max of the
 * four window sums a and its plane index.  The window's scan order is (0,0),
 * (0,1), (1,0), (1,1), a later position winning only when larger or the
 * first NaN: as a tournament (two levels, not three dependent steps), each
 * row's first maximum, then the bottom one only if it beats the top.
 * `room`: elements of out / idx from the plane's start that this task
 * writes later anyway (the rest of its image's planes). */
static inline __attribute__((always_inline)) void FN(p22_pool_store)(
    const FN(vblock) a[4], REAL *restrict out, int64_t *restrict idx, int64_t room, int64_t ow, int64_t pow_,
    int64_t py, int64_t v0, FN(idx_block) lane2) {
    const FN(iblock) right_top = FN(p22_beats)(a[1], a[0]), right_bottom = FN(p22_beats)(a[3], a[2]);
    const FN(vblock) top = FN(p22_pick)(right_top, a[1], a[0]);
    const FN(vblock) bottom = FN(p22_pick)(right_bottom, a[3], a[2]);
    const FN(iblock) down = FN(p22_beats)(bottom, top);
    const FN(vblock) best = FN(p22_pick)(down, bottom, top);
    const FN(iblock) off = (down & ((FN(lane_int))ow + (right_bottom & 1))) | (~down & right_top & 1);
    const int64_t at = py * pow_ + v0;
    /* the winners' plane indices, as one vector of int64 lanes */
    const FN(idx_block) at_idx = __builtin_convertvector(off, FN(idx_block)) + (2 * py * ow + 2 * v0) + lane2;
    if (at + CONV_VEC <= room) {
        /* whole vectors: lanes past the row land on the next row or plane
         * of this image, which this task writes later (the caller makes
         * room smaller where it already has) */
        *(FN(vblock) *)(out + at) = best;
        *(FN(idx_block) *)(idx + at) = at_idx;
    } else {
        REAL best_lane[CONV_VEC];
        int64_t idx_lane[CONV_VEC];
        *(FN(vblock) *)best_lane = best;
        *(FN(idx_block) *)idx_lane = at_idx;
        const int64_t cnt = pow_ - v0 < CONV_VEC ? pow_ - v0 : CONV_VEC;
        for (int64_t l = 0; l < cnt; ++l) {
            out[at + l] = best_lane[l];
            idx[at + l] = idx_lane[l];
        }
    }
}

/* One filter's pooled plane: out, idx (PH x PW) <- max over each 2x2 window
 * of bias + the correlation, the first maximum (or first NaN) winning; two
 * pooled rows at a time, rows in order (see p22_pool_store's `room`). */
static inline __attribute__((always_inline)) void FN(p22_fwd_body)(
    const REAL *restrict xq, const REAL *restrict wf, REAL bias, REAL *restrict out, int64_t *restrict idx,
    int64_t room, int64_t c, const int64_t fh, const int64_t fw, int64_t ow, int64_t poh, int64_t pow_,
    FN(p22_geom) g) {
    FN(idx_block) lane2; /* 2 * lane: the column of each lane's window */
    for (int l = 0; l < CONV_VEC; ++l) lane2[l] = 2 * l;
    FN(vblock) a[2][4];
    int64_t py = 0;
    for (; py + 2 <= poh; py += 2)
        for (int64_t v0 = 0; v0 < pow_; v0 += CONV_VEC) {
            FN(p22_window_sums)(xq, wf, bias, c, fh, fw, py, v0, g, 2, a);
            /* with several vectors a row, row py's last one would spill onto
             * row py + 1's first, already written: stored exactly */
            const int last_of_several = v0 > 0 && v0 + CONV_VEC >= pow_;
            FN(p22_pool_store)(a[0], out, idx, last_of_several ? 0 : room, ow, pow_, py, v0, lane2);
            FN(p22_pool_store)(a[1], out, idx, room, ow, pow_, py + 1, v0, lane2);
        }
    if (py < poh)
        for (int64_t v0 = 0; v0 < pow_; v0 += CONV_VEC) {
            FN(p22_window_sums)(xq, wf, bias, c, fh, fw, py, v0, g, 1, a);
            FN(p22_pool_store)(a[0], out, idx, room, ow, pow_, py, v0, lane2);
        }
}

static void FN(p22_fwd_plane)(const REAL *restrict xq, const REAL *restrict wf, REAL bias, REAL *restrict out,
                              int64_t *restrict idx, int64_t room, int64_t c, int64_t fh, int64_t fw, int64_t ow,
                              int64_t poh, int64_t pow_, FN(p22_geom) g) {
    if (fh == 3 && fw == 3) FN(p22_fwd_body)(xq, wf, bias, out, idx, room, c, 3, 3, ow, poh, pow_, g);
    else if (fh == 5 && fw == 5) FN(p22_fwd_body)(xq, wf, bias, out, idx, room, c, 5, 5, ow, poh, pow_, g);
    else FN(p22_fwd_body)(xq, wf, bias, out, idx, room, c, fh, fw, ow, poh, pow_, g);
}

/* Scratch of one thread: the phases, and per filter plane the pooled
 * gradient and the winner's window position by pooled vector. */
typedef struct {
    REAL *xq;           /* c * 2 * hp * wq: the image's phases (the input gradient's, in p22_bwd_input) */
    REAL *grad;         /* planes * PH*PW (+ a vector of slack): the gradient where it counts, else 0 */
    FN(lane_int) *code; /* alike: the winner's position dy * 2 + dx, or -1 */
} FN(p22_scratch);

static int FN(p22_scratch_alloc)(FN(p22_scratch) *s, int64_t c, int64_t planes, int64_t pooled, FN(p22_geom) g) {
    s->xq = fc_alloc_lines(sizeof(REAL) * c * 2 * g.hp * g.wq);
    s->grad = fc_alloc_lines(sizeof(REAL) * (planes * pooled + CONV_VEC));
    s->code = fc_alloc_lines(sizeof(FN(lane_int)) * (planes * pooled + CONV_VEC));
    if (!(s->xq && s->grad && s->code)) return 0;
    for (int64_t k = planes * pooled; k < planes * pooled + CONV_VEC; ++k) { /* the slack a last row's vector reads */
        s->grad[k] = 0;
        s->code[k] = -1;
    }
    return 1;
}

static void FN(p22_scratch_free)(FN(p22_scratch) *s) {
    free(s->xq);
    free(s->grad);
    free(s->code);
}

/* base[k] <- the plane index of the first position of pooled element k's
 * window (2 * py * ow + 2 * px), for the pooled plane's PH*PW elements. */
static int64_t *FN(p22_window_bases)(int64_t ow, int64_t poh, int64_t pow_) {
    int64_t *base = malloc(sizeof(int64_t) * poh * pow_);
    if (base != NULL)
        for (int64_t py = 0; py < poh; ++py)
            for (int64_t px = 0; px < pow_; ++px) base[py * pow_ + px] = 2 * py * ow + 2 * px;
    return base;
}

/* grad, code (PH*PW) <- one pooled plane's gradient (0 where the ReLU
 * after the pool zeroed the unit, mask <= 0) and its winner's window
 * position; returns the number of indices outside their window (code -1,
 * gradient 0).  Whole planes, branch-free: the loops vectorise. */
static int64_t FN(p22_prepare)(const REAL *restrict d_out, const REAL *restrict mask, int64_t has_mask,
                               const int64_t *restrict ix, const int64_t *restrict base, REAL *restrict grad,
                               FN(lane_int) *restrict code, int64_t ow, int64_t pooled) {
    int64_t bad = 0;
    for (int64_t k = 0; k < pooled; ++k) {
        /* untrusted: the distance from the window's first position, in
         * unsigned arithmetic (no overflow), must be 0, 1, ow or ow + 1 */
        const uint64_t d = (uint64_t)ix[k] - (uint64_t)base[k];
        const uint64_t dy = d >= (uint64_t)ow, dx = d - dy * (uint64_t)ow;
        const int hit = (dx <= 1) & (d <= (uint64_t)ow + 1);
        bad += !hit;
        code[k] = hit ? (FN(lane_int))(2 * dy + dx) : -1;
    }
    for (int64_t k = 0; k < pooled; ++k) {
        const REAL m = mask[k], gv = d_out[k]; /* mask is d_out when there is none */
        const int keep = (code[k] >= 0) & (!has_mask | !(m <= 0));
        grad[k] = keep ? gv : 0;
    }
    return bad;
}

/* Lanes l < count: the lanes of a pooled row's vector that exist. */
static inline FN(iblock) FN(p22_lanes_below)(int64_t count) {
    FN(iblock) lane;
    for (int l = 0; l < CONV_VEC; ++l) lane[l] = l;
    return lane < (FN(lane_int))(count < CONV_VEC ? count : CONV_VEC);
}

/* The gradient of window position k of a pooled vector: the pooled gradient
 * in the lanes whose winner is k, else 0. */
static inline FN(vblock) FN(p22_grad_at)(FN(vblock) grad, FN(iblock) code, int k) {
    return (FN(vblock))((FN(iblock))grad & (code == (FN(lane_int))k));
}

/* acc[(ch * fh + i) * fw + j] += the gradient of tap (ch, i, j) from one
 * image's filter plane (prepared), in lanes; *bias_acc += its gradients. */
static inline __attribute__((always_inline)) void FN(p22_params_body)(
    const REAL *restrict xq, const REAL *restrict grad, const FN(lane_int) *restrict code, FN(vblock) *restrict acc,
    FN(vblock) *restrict bias_acc, int64_t c, const int64_t fh, const int64_t fw, int64_t poh, int64_t pow_,
    FN(p22_geom) g) {
    FN(vblock) cells[P22_MAX_K + 1], s[P22_MAX_K * P22_MAX_K];
    for (int64_t ch = 0; ch < c; ++ch) {
        for (int64_t t = 0; t < fh * fw; ++t) s[t] = acc[ch * fh * fw + t];
        for (int64_t py = 0; py < poh; ++py)
            for (int64_t v0 = 0; v0 < pow_; v0 += CONV_VEC) {
                const FN(vblock) gv = (FN(vblock))(*(const FN(iblock) *)(grad + py * pow_ + v0) &
                                                   FN(p22_lanes_below)(pow_ - v0));
                const FN(iblock) cv = *(const FN(iblock) *)(code + py * pow_ + v0);
                FN(vblock) gk[4];
                for (int k = 0; k < 4; ++k) gk[k] = FN(p22_grad_at)(gv, cv, k);
                if (ch == 0) *bias_acc += gv;
                /* input row 2 * py + u at a time (as p22_window_sums) */
                for (int64_t u = 0; u <= fh; ++u) {
                    for (int64_t v = 0; v <= fw; ++v)
                        cells[v] = *(const FN(vblock) *)(xq + FN(p22_row)(ch, v & 1, 2 * py + u, g) + v0 + (v >> 1));
                    for (int dy = 0; dy < 2; ++dy) {
                        const int64_t i = u - dy;
                        if (i < 0 || i >= fh) continue;
                        for (int64_t j = 0; j < fw; ++j)
                            for (int dx = 0; dx < 2; ++dx) s[i * fw + j] += gk[2 * dy + dx] * cells[dx + j];
                    }
                }
            }
        for (int64_t t = 0; t < fh * fw; ++t) acc[ch * fh * fw + t] = s[t];
    }
}

static void FN(p22_params_plane)(const REAL *restrict xq, const REAL *restrict grad, const FN(lane_int) *restrict code,
                                 FN(vblock) *restrict acc, FN(vblock) *restrict bias_acc, int64_t c, int64_t fh,
                                 int64_t fw, int64_t poh, int64_t pow_, FN(p22_geom) g) {
    if (fh == 3 && fw == 3) FN(p22_params_body)(xq, grad, code, acc, bias_acc, c, 3, 3, poh, pow_, g);
    else if (fh == 5 && fw == 5) FN(p22_params_body)(xq, grad, code, acc, bias_acc, c, 5, 5, poh, pow_, g);
    else FN(p22_params_body)(xq, grad, code, acc, bias_acc, c, fh, fw, poh, pow_, g);
}

/* Lanes of a vector summed in double, in lane order. */
static inline double FN(p22_lane_sum)(FN(vblock) v) {
    double sum = 0;
    for (int k = 0; k < CONV_VEC; ++k) sum += v[k];
    return sum;
}

/* Weight and bias gradients.  A task is a fixed block of P22_BLOCK images
 * whose sums stay in vector lanes; the blocks' lane sums are added in block
 * order in double, so the result does not depend on the thread count. */
#define P22_BLOCK 4
static int FN(p22_bwd_params)(const REAL *restrict x, const REAL *restrict d_out, const REAL *restrict mask,
                              const int64_t *restrict idx, REAL *restrict d_w, REAL *restrict d_b,
                              const fc_conv_geom *cg, const fc_pool_geom *pg, int64_t has_mask) {
    FC_CONV_LOCALS(cg);
    const int64_t poh = pg->oh, pow_ = pg->ow, pooled = poh * pow_, taps = c * fh * fw;
    const FN(p22_geom) g = FN(p22_sizes)(h, w, ph, pw, fw, pow_);
    const int64_t blocks = (n + P22_BLOCK - 1) / P22_BLOCK;
    double *part = calloc(blocks * f * (taps + 1), sizeof(double)); /* per block, per filter: taps, bias */
    int64_t *base = FN(p22_window_bases)(ow, poh, pow_);
    if (part == NULL || base == NULL) {
        free(part);
        free(base);
        return FC_ERR_NOMEM;
    }
    int failed = 0;
    int64_t bad = 0;
#pragma omp parallel num_threads(fc_threads_for(n * f * pooled * taps * 4)) reduction(+ : bad)
    {
        FN(p22_scratch) s;
        const int scratch_ok = FN(p22_scratch_alloc)(&s, c, 1, pooled, g);
        FN(vblock) *acc = fc_alloc_lines(sizeof(FN(vblock)) * f * (taps + 1)); /* per filter: taps, bias */
        const int ok = scratch_ok && acc;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; ++blk) {
            if (!ok) continue;
            memset(acc, 0, sizeof(FN(vblock)) * f * (taps + 1));
            const int64_t img_end = (blk + 1) * P22_BLOCK < n ? (blk + 1) * P22_BLOCK : n;
            for (int64_t img = blk * P22_BLOCK; img < img_end; ++img) {
                FN(p22_phases)(x + img * c * h * w, s.xq, c, h, w, ph, pw, g);
                for (int64_t fi = 0; fi < f; ++fi) {
                    const int64_t at = (img * f + fi) * pooled;
                    bad += FN(p22_prepare)(d_out + at, mask + at, has_mask, idx + at, base, s.grad, s.code, ow,
                                           pooled);
                    FN(vblock) *af = acc + fi * (taps + 1);
                    FN(p22_params_plane)(s.xq, s.grad, s.code, af, af + taps, c, fh, fw, poh, pow_, g);
                }
            }
            for (int64_t t = 0; t < f * (taps + 1); ++t) part[blk * f * (taps + 1) + t] = FN(p22_lane_sum)(acc[t]);
        }
        FN(p22_scratch_free)(&s);
        free(acc);
    }
    if (!failed)
        for (int64_t fi = 0; fi < f; ++fi)
            for (int64_t t = 0; t <= taps; ++t) {
                double sum = 0;
                for (int64_t blk = 0; blk < blocks; ++blk) sum += part[(blk * f + fi) * (taps + 1) + t];
                if (t < taps) d_w[fi * taps + t] = (REAL)sum;
                else d_b[fi] = (REAL)sum;
            }
    free(part);
    free(base);
    if (failed) return FC_ERR_NOMEM;
    return bad ? FC_ERR_INDEX : FC_OK;
}
#undef P22_BLOCK

/* dq (the image's phases) += the input gradient from every filter's
 * prepared plane of one image: per pooled vector, each cell's sum over the
 * filters and the window positions and taps that read it, added once. */
static inline __attribute__((always_inline)) void FN(p22_input_body)(
    const REAL *restrict grad, const FN(lane_int) *restrict code, const REAL *restrict wt, REAL *restrict dq,
    int64_t f, int64_t c, const int64_t fh, const int64_t fw, int64_t poh, int64_t pow_, FN(p22_geom) g) {
    FN(vblock) cells[P22_MAX_CELLS];
    const int64_t plane = poh * pow_;
    for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t py = 0; py < poh; ++py)
            for (int64_t v0 = 0; v0 < pow_; v0 += CONV_VEC) {
                const FN(iblock) lanes = FN(p22_lanes_below)(pow_ - v0);
                for (int64_t t = 0; t < (fh + 1) * (fw + 1); ++t) cells[t] = (FN(vblock)){0};
                for (int64_t fi = 0; fi < f; ++fi) {
                    const FN(iblock) gbits = *(const FN(iblock) *)(grad + fi * plane + py * pow_ + v0);
                    const FN(vblock) gv = (FN(vblock))(gbits & lanes);
                    const FN(iblock) cv = *(const FN(iblock) *)(code + fi * plane + py * pow_ + v0);
                    FN(vblock) gk[4];
                    for (int k = 0; k < 4; ++k) gk[k] = FN(p22_grad_at)(gv, cv, k);
                    const REAL *wf = wt + (fi * c + ch) * fh * fw;
                    for (int64_t i = 0; i < fh; ++i)
                        for (int64_t j = 0; j < fw; ++j)
                            for (int dy = 0; dy < 2; ++dy)
                                for (int dx = 0; dx < 2; ++dx)
                                    cells[(dy + i) * (fw + 1) + dx + j] += gk[2 * dy + dx] * wf[i * fw + j];
                }
                for (int64_t u = 0; u <= fh; ++u)
                    for (int64_t v = 0; v <= fw; ++v) {
                        FN(vblock) *d = (FN(vblock) *)(dq + FN(p22_row)(ch, v & 1, 2 * py + u, g) + v0 + (v >> 1));
                        *d += cells[u * (fw + 1) + v];
                    }
            }
}

static void FN(p22_input_image)(const REAL *restrict grad, const FN(lane_int) *restrict code, const REAL *restrict wt,
                                REAL *restrict dq, int64_t f, int64_t c, int64_t fh, int64_t fw, int64_t poh,
                                int64_t pow_, FN(p22_geom) g) {
    if (fh == 3 && fw == 3) FN(p22_input_body)(grad, code, wt, dq, f, c, 3, 3, poh, pow_, g);
    else if (fh == 5 && fw == 5) FN(p22_input_body)(grad, code, wt, dq, f, c, 5, 5, poh, pow_, g);
    else FN(p22_input_body)(grad, code, wt, dq, f, c, fh, fw, poh, pow_, g);
}

/* d_x (N, C, H, W) <- the input gradient; one image per task. */
static int FN(p22_bwd_input)(const REAL *restrict d_out, const REAL *restrict mask, const int64_t *restrict idx,
                             const REAL *restrict wt, REAL *restrict d_x, const fc_conv_geom *cg,
                             const fc_pool_geom *pg, int64_t has_mask) {
    FC_CONV_LOCALS(cg);
    const int64_t poh = pg->oh, pow_ = pg->ow, pooled = poh * pow_, taps = c * fh * fw;
    const FN(p22_geom) g = FN(p22_sizes)(h, w, ph, pw, fw, pow_);
    int64_t *base = FN(p22_window_bases)(ow, poh, pow_);
    if (base == NULL) return FC_ERR_NOMEM;
    int failed = 0;
    int64_t bad = 0;
#pragma omp parallel num_threads(fc_threads_for(n * f * pooled * taps * 4)) reduction(+ : bad)
    {
        FN(p22_scratch) s;
        const int ok = FN(p22_scratch_alloc)(&s, c, f, pooled, g);
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t img = 0; img < n; ++img) {
            if (!ok) continue;
            for (int64_t fi = 0; fi < f; ++fi) {
                const int64_t at = (img * f + fi) * pooled;
                bad += FN(p22_prepare)(d_out + at, mask + at, has_mask, idx + at, base, s.grad + fi * pooled,
                                       s.code + fi * pooled, ow, pooled);
            }
            /* the phases' scratch holds the gradient of the image's phases here */
            memset(s.xq, 0, sizeof(REAL) * c * 2 * g.hp * g.wq);
            FN(p22_input_image)(s.grad, s.code, wt, s.xq, f, c, fh, fw, poh, pow_, g);
            REAL *dxi = d_x + img * c * h * w;
            for (int64_t ch = 0; ch < c; ++ch)
                for (int64_t y = 0; y < h; ++y) {
                    const REAL *even = s.xq + FN(p22_row)(ch, 0, y + ph, g);
                    const REAL *odd = s.xq + FN(p22_row)(ch, 1, y + ph, g);
                    REAL *dst = dxi + (ch * h + y) * w;
                    for (int64_t xc = 0; xc < w; ++xc) {
                        const int64_t col = xc + pw;
                        dst[xc] = (col & 1) ? odd[col >> 1] : even[col >> 1];
                    }
                }
        }
        FN(p22_scratch_free)(&s);
    }
    free(base);
    if (failed) return FC_ERR_NOMEM;
    return bad ? FC_ERR_INDEX : FC_OK;
}

/* The forward; one image per task (each task writes only its own planes). */
static int FN(p22_fwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict b, REAL *restrict out,
                       int64_t *restrict idx, const fc_conv_geom *cg, const fc_pool_geom *pg) {
    FC_CONV_LOCALS(cg);
    const int64_t poh = pg->oh, pow_ = pg->ow, pooled = poh * pow_, taps = c * fh * fw;
    const FN(p22_geom) g = FN(p22_sizes)(h, w, ph, pw, fw, pow_);
    int failed = 0;
#pragma omp parallel num_threads(fc_threads_for(n * f * pooled * taps * 4))
    {
        REAL *xq = fc_alloc_lines(sizeof(REAL) * c * 2 * g.hp * g.wq);
        if (xq == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t img = 0; img < n; ++img) {
            if (xq == NULL) continue;
            FN(p22_phases)(x + img * c * h * w, xq, c, h, w, ph, pw, g);
            for (int64_t fi = 0; fi < f; ++fi) {
                const int64_t at = (img * f + fi) * pooled;
                FN(p22_fwd_plane)(xq, wt + fi * taps, b[fi], out + at, idx + at, (f - fi) * pooled, c, fh, fw, ow,
                                  poh, pow_, g);
            }
        }
        free(xq);
    }
    return failed ? FC_ERR_NOMEM : FC_OK;
}

#undef P22_MAX_K
#undef P22_MAX_CELLS
#undef P22_MAX_TAPS
