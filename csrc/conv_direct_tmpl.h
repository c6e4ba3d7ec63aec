/* Direct convolution for one group, any stride (and, through
 * conv_depthwise_tmpl.h, depthwise), for one element type (included by
 * conv_direct.c through instantiate.h with REAL and FN(name)).
 *
 * Why: with stride 1, the input an output row reads is a contiguous row of
 * the zero-padded image.  Lay the outputs out on the padded width (position
 * p = y*WP + x, x < WP; the WP - OW extra columns per row are computed and
 * dropped) and every tap (c, i, j) reads the padded image at a fixed offset
 * c*HP*WP + i*dh*WP + j*dw from p: the whole convolution is
 *     out[f, p] = sum over taps k of w[f, k] * xp[off[k] + p],
 * a GEMM whose right-hand matrix is the padded image itself, read at shifted
 * offsets -- nothing is unfolded (no im2col), nothing is packed.  A register
 * block of D_MR filters x D_NV vectors of positions stays in registers over
 * all taps: per tap, D_NV vector loads and D_MR broadcasts feed D_MR*D_NV
 * multiply-adds.  Position blocks are the outer loop, so one block's input
 * rows stay in L1 while every filter block reads them.
 *
 * The input gradient is the same computation: a stride-1 correlation of the
 * output gradient (padded by (K-1)*d - p) with the weights flipped and
 * transposed.  The weight gradient runs the same layout the other way:
 * d_w[f, k] = sum over p of dy[f, p] * xp[off[k] + p], register blocks of
 * D_GF filters x D_GT taps, each accumulator a vector of positions.  Per image
 * nothing is shared between threads: tasks are images (forward) or fixed
 * blocks of images (backward, summed in block order: the same bits at any
 * thread count).  For the weight gradient a block's images are laid side by
 * side along the positions, so small maps still give long runs.
 *
 * A stride splits the padded input into sh x sw phase planes first
 * (split_phases): each tap is then again a fixed offset, into one phase, and
 * the register blocks walk a tap table (no tap multiplies a zero); the input
 * gradient is one stride-1 correlation per input phase, scattered sh, sw
 * apart (dplace).
 *
 * The extra positions (x >= OW, and between stacked images) are computed
 * with a zero output gradient; with non-finite inputs (inf) that adds
 * 0 * inf = NaN to taps whose exact gradient is finite -- where an inf input
 * already makes most of the exact weight gradient non-finite.
 */

/* The register tiles per instruction set, of vectors of FC_VBYTES
 * (common.h): a tile uses most of the registers -- 32 with AVX-512, 16 with
 * AVX2 or SSE.  Forward: D_MR filters x D_NV vectors of positions, D_NV
 * loads and D_MR broadcasts per tap (8 x 3 ran 25 % faster than 8 x 2).
 * Weight gradient: D_GF filters x D_GT taps; per vector of positions D_GF + D_GT
 * loads (most of them unaligned) feed D_GF * D_GT multiply-adds: 3 x 3 with
 * 16 registers ran 1.3x faster than 2 x 4 (AVX2 on a Zen 5, 9 accumulators
 * and 6 loads; 3 x 4 and 4 x 3 do not fit the registers with their loads). */
#if defined(__AVX512F__)
#define D_MR 8
#define D_NV 3
#define D_GF 4
#define D_GT 4
#else
#define D_MR 4
#define D_NV 3
#define D_GF 3
#define D_GT 3
#endif
#define DVEC ((int64_t)(FC_VBYTES / sizeof(REAL))) /* elements per vector */
#define D_PB (D_NV * DVEC)                         /* positions per register block */

typedef REAL FN(dvec) __attribute__((vector_size(FC_VBYTES), aligned(sizeof(REAL)), may_alias));

static inline FN(dvec) FN(dload)(const REAL *p) { return *(const FN(dvec) *)p; }

/* Lane indices for __builtin_shuffle of two dvecs. */
#if FC_REAL_IS_FLOAT
typedef int32_t FN(lane_mask) __attribute__((vector_size(FC_VBYTES)));
#else
typedef int64_t FN(lane_mask) __attribute__((vector_size(FC_VBYTES)));
#endif

/* Geometry of one stride-1 correlation as this file runs it. */
typedef struct {
    int64_t ci, fo, fr;     /* input planes, output planes, output planes rounded up to D_MR */
    int64_t kh, kw, dh, dw; /* kernel and dilation */
    int64_t hp, wp;         /* padded input plane */
    int64_t oh, ow;         /* output plane (oh = hp - (kh-1)*dh, ow <= wp - (kw-1)*dw) */
    int64_t len, lr;        /* positions oh*wp, rounded up to whole register blocks */
    const int64_t *off;     /* NULL: the taps of a stride-1 kernel; else each tap's offset (phase layouts) */
    int64_t taps;           /* with off: the number of taps */
    int64_t period;         /* rows per image: computed row r is row r % period of image r / period */
} FN(dgeom);

/* d computes `rows` rows of positions (oh; len and lr follow). */
static void FN(set_rows)(FN(dgeom) *d, int64_t rows) {
    d->oh = rows;
    d->len = rows * d->wp;
    d->lr = (d->len + D_PB - 1) / D_PB * D_PB;
}

static FN(dgeom) FN(direct_geom)(int64_t ci, int64_t fo, int64_t kh, int64_t kw, int64_t dh, int64_t dw,
                                 int64_t hp, int64_t wp, int64_t ow, int64_t round_f) {
    FN(dgeom) d = {ci, fo, (fo + round_f - 1) / round_f * round_f, kh, kw, dh, dw, hp, wp, 0, ow, 0, 0, NULL, 0, hp};
    FN(set_rows)(&d, hp - (kh - 1) * dh);
    return d;
}

/* A stack of bc images (stride 1), each of ci planes h x w padded by (ph,
 * pw), one above the other in every plane: image b's padded row y is plane
 * row b*period + y.  Where the padding is no wider than the kernel's reach
 * (the usual p <= (k-1)*d), neighbours share it: the zero rows below one
 * image are the rows above the next (period h + ph), and the zero columns
 * right of a row are the next row's left ones (width w + pw).  Small maps
 * gain most: a 3x3 / padding 1 convolution on 4x4 maps computed 48
 * positions per image for 16 outputs, on the stack 25; on 8x8, 96 -> 81. */
static FN(dgeom) FN(stack_geom)(int64_t ci, int64_t fo, int64_t kh, int64_t kw, int64_t dh, int64_t dw, int64_t h,
                                int64_t w, int64_t ph, int64_t pw, int64_t bc, int64_t round_f) {
    const int share_rows = ph >= 0 && ph <= (kh - 1) * dh, share_cols = pw >= 0 && pw <= (kw - 1) * dw;
    const int64_t period = share_rows ? h + ph : h + 2 * ph;
    const int64_t hs = bc * period + (share_rows ? ph : 0), ws = share_cols ? w + pw : w + 2 * pw;
    FN(dgeom) d = FN(direct_geom)(ci, fo, kh, kw, dh, dw, hs, ws, w + 2 * pw - (kw - 1) * dw, round_f);
    d.period = period;
    return d;
}

/* Images per stack for n images whose one-image stack is d1: up to ~1024
 * computed positions, the largest count whose stacks the threads share
 * within 3 % of evenly (static schedule: a thread runs at most
 * ceil(stacks / threads) of them) -- 5 stacks on 2 threads ran 6 % slower
 * than single images. */
static int64_t FN(stack_count)(FN(dgeom) d1, int64_t n) {
    const int64_t per_image = d1.period * d1.wp, threads = fc_nthreads > 1 ? fc_nthreads : 1;
    const int64_t want = fc_clamp((1024 + per_image - 1) / per_image, 1, n);
    int64_t best = 1;
    double best_share = 0;
    for (int64_t bc = want; bc >= 1; --bc) {
        const int64_t stacks = (n + bc - 1) / bc, most = (stacks + threads - 1) / threads * bc;
        const double share = (double)n / (double)(threads * most); /* 1: every thread equally busy */
        if (share >= 0.97) return bc;
        if (share > best_share) best = bc, best_share = share;
    }
    return best;
}

/* Elements of a padded-input buffer: the planes, then zero slack for the
 * reads of the last (rounded-up) position block. */
static int64_t FN(padded_size)(const FN(dgeom) *d) {
    return d->ci * d->hp * d->wp + (d->lr - d->len) + d->kw * d->dw + 2 * DVEC;
}

/* dst (the planes of d, zero elsewhere, slack zeroed) <- bc images of
 * `planes` planes h x w each (consecutive in src), image b's row y at plane
 * row b*d->period + top + y, its column x at left + x; rows and columns
 * outside an image's period x width are cropped (negative padding).  With
 * `zeroed`, dst already holds zeros everywhere this call does not write (the
 * previous call had the same geometry): only the pixels are copied --
 * clearing the whole buffer per image cost ~10 % of a convolution. */
static void FN(stack_planes)(const REAL *restrict src, REAL *restrict dst, int64_t planes, int64_t h, int64_t w,
                             int64_t top, int64_t left, int64_t bc, const FN(dgeom) *d, int zeroed) {
    if (!zeroed) memset(dst, 0, sizeof(REAL) * FN(padded_size)(d));
    const int64_t x0 = left < 0 ? -left : 0, x1 = w < d->wp - left ? w : d->wp - left;
    const int64_t y0 = top < 0 ? -top : 0, y1 = h < d->period - top ? h : d->period - top;
    if (x1 <= x0) return;
    for (int64_t b = 0; b < bc; ++b)
        for (int64_t c = 0; c < planes; ++c)
            for (int64_t y = y0; y < y1; ++y)
                memcpy(dst + (c * d->hp + b * d->period + top + y) * d->wp + left + x0,
                       src + ((b * planes + c) * h + y) * w + x0, sizeof(REAL) * (x1 - x0));
}

/* The stride-s layout: the padded image split into sh x sw phase planes,
 * phase (a, b) of channel ch at plane ch*sh*sw + a*sw + b, holding the padded
 * pixels (r*sh + a, u*sw + b) at (r, u) of an hq x wq plane.  A tap (i, j)
 * of output (y, x) reads phase ((i*dh) % sh, (j*dw) % sw) at
 * (y + (i*dh)/sh, x + (j*dw)/sw): a fixed offset from y*wq + x, so a strided
 * convolution runs as the stride-1 one, over sh*sw times the planes with the
 * same number of taps (no multiplications by zero). */
static int64_t FN(phase_offset)(int64_t ch, int64_t i, int64_t j, int64_t dh, int64_t dw, int64_t sh, int64_t sw,
                                int64_t planes_per_phase, int64_t hq, int64_t wq) {
    const int64_t phase = ch * sh * sw + (i * dh) % sh * sw + (j * dw) % sw;
    return (phase * planes_per_phase * hq + (i * dh) / sh) * wq + (j * dw) / sw;
}

/* even[k] <- row[2k], odd[k] <- row[2k + 1] for the w elements of row, two
 * vectors at a time (element by element, the phase split of a stride-2
 * layer took as long as its convolution with 8 filters). */
static void FN(deinterleave)(const REAL *restrict row, int64_t w, REAL *restrict even, REAL *restrict odd) {
    FN(lane_mask) pick_even, pick_odd;
    for (int e = 0; e < DVEC; ++e) pick_even[e] = 2 * e, pick_odd[e] = 2 * e + 1;
    int64_t k = 0;
    for (; 2 * k + 2 * DVEC <= w; k += DVEC) {
        const FN(dvec) a = FN(dload)(row + 2 * k), b = FN(dload)(row + 2 * k + DVEC);
        *(FN(dvec) *)(even + k) = __builtin_shuffle(a, b, pick_even);
        *(FN(dvec) *)(odd + k) = __builtin_shuffle(a, b, pick_odd);
    }
    for (; 2 * k < w; ++k) {
        even[k] = row[2 * k];
        if (2 * k + 1 < w) odd[k] = row[2 * k + 1];
    }
}

/* row[2k] <- even[k], row[2k + 1] <- odd[k] for the w elements of row: the
 * inverse of deinterleave. */
static void FN(interleave)(const REAL *restrict even, const REAL *restrict odd, int64_t w, REAL *restrict row) {
    FN(lane_mask) low, high;
    for (int e = 0; e < DVEC; ++e) low[e] = e / 2 + (e % 2) * DVEC, high[e] = low[e] + DVEC / 2;
    int64_t k = 0;
    for (; 2 * k + 2 * DVEC <= w; k += DVEC) {
        const FN(dvec) a = FN(dload)(even + k), b = FN(dload)(odd + k);
        *(FN(dvec) *)(row + 2 * k) = __builtin_shuffle(a, b, low);
        *(FN(dvec) *)(row + 2 * k + DVEC) = __builtin_shuffle(a, b, high);
    }
    for (; 2 * k < w; ++k) {
        row[2 * k] = even[k];
        if (2 * k + 1 < w) row[2 * k + 1] = odd[k];
    }
}

/* dst (c planes of h x w) <- the pixels of the phase planes src, phase q's c
 * planes of hq x wq at src + q*c*hq*wq (the padded pixel (y + top, x + left)
 * in phase ((y + top) % sh, (x + left) % sw) at ((y + top) / sh, (x + left) / sw)):
 * a strided input gradient computed phase by phase, put together. */
static void FN(merge_phases)(const REAL *restrict src, REAL *restrict dst, int64_t c, int64_t h, int64_t w,
                             int64_t top, int64_t left, int64_t sh, int64_t sw, int64_t hq, int64_t wq) {
    const int64_t plane = hq * wq;
    for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t y = 0; y < h; ++y) {
            const int64_t a = (y + top) % sh, r = (y + top) / sh;
            REAL *row = dst + (ch * h + y) * w;
            const REAL *phase0 = src + ((a * sw) * c + ch) * plane + r * wq; /* phase (a, 0) */
            if (sw == 2) {
                const REAL *phase1 = phase0 + c * plane;
                FN(interleave)((left % 2 ? phase1 : phase0) + left / 2, (left % 2 ? phase0 : phase1) + (left + 1) / 2,
                               w, row);
                continue;
            }
            for (int64_t x = 0; x < w; ++x) row[x] = phase0[(x + left) % sw * c * plane + (x + left) / sw];
        }
}

/* dst <- the phase planes of src (c planes of h x w, padded by (top, left)):
 * plane (ch*sh*sw + phase)*stack + slot; zeros elsewhere unless `zeroed`
 * says they are already there (the same geometry as the previous call). */
static void FN(split_phases)(const REAL *restrict src, REAL *restrict dst, int64_t c, int64_t h, int64_t w,
                             int64_t top, int64_t left, int64_t sh, int64_t sw, int64_t hq, int64_t wq,
                             int64_t stack, int64_t slot, int64_t size, int zeroed) {
    if (!zeroed) memset(dst, 0, sizeof(REAL) * size);
    for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t y = 0; y < h; ++y) {
            const int64_t yy = y + top, a = yy % sh, r = yy / sh;
            const REAL *row = src + (ch * h + y) * w;
            if (sw == 2 && left >= 0) { /* even columns to phase left % 2, odd ones to the other */
                REAL *phase0 = dst + (((ch * sh + a) * sw) * stack + slot) * hq * wq + r * wq;
                REAL *phase1 = phase0 + stack * hq * wq;
                FN(deinterleave)(row, w, (left % 2 ? phase1 : phase0) + left / 2,
                                 (left % 2 ? phase0 : phase1) + (left + 1) / 2);
                continue;
            }
            for (int64_t b = 0; b < sw; ++b) {
                REAL *out = dst + (((ch * sh + a) * sw + b) * stack + slot) * hq * wq + r * wq;
                const int64_t x0 = ((b - left) % sw + sw) % sw; /* first x with (x + left) % sw == b */
                REAL *o = out + (x0 + left) / sw;
                for (int64_t x = x0; x < w; x += sw) *o++ = row[x];
            }
        }
}

/* One tap of a register block: D_NV vectors of positions from xr, D_MR
 * weights from w, D_MR * D_NV multiply-adds. */
static inline __attribute__((always_inline)) void FN(tap)(FN(dvec) acc[D_MR][D_NV], const REAL *restrict xr,
                                                         const REAL *restrict w) {
    FN(dvec) xv[D_NV];
    for (int v = 0; v < D_NV; ++v) xv[v] = FN(dload)(xr + v * DVEC);
    for (int m = 0; m < D_MR; ++m) {
        const REAL wv = w[m];
        for (int v = 0; v < D_NV; ++v) acc[m][v] += wv * xv[v];
    }
}

/* buf rows f0 .. f0 + D_MR <- a register block. */
static inline __attribute__((always_inline)) void FN(store_block)(FN(dvec) acc[D_MR][D_NV], REAL *restrict buf,
                                                                 int64_t f0) {
    for (int m = 0; m < D_MR; ++m)
        for (int v = 0; v < D_NV; ++v) *(FN(dvec) *)(buf + (f0 + m) * D_PB + v * DVEC) = acc[m][v];
}

/* One register block of a tap table: as direct_block, tap k at off[k]. */
static inline __attribute__((always_inline)) void FN(direct_block_table)(
    const REAL *restrict xp, const int64_t *restrict off, int64_t taps, const REAL *restrict wt,
    REAL *restrict buf, int64_t p0, int64_t f0, int64_t fr) {
    FN(dvec) acc[D_MR][D_NV] = {{{0}}};
    for (int64_t k = 0; k < taps; ++k) {
        const REAL *xr = xp + off[k] + p0;
        const REAL *w = wt + k * fr + f0;
        FN(tap)(acc, xr, w);
    }
    FN(store_block)(acc, buf, f0);
}

/* One register block: buf (fr x D_PB) rows f0..f0+D_MR <- the correlation at
 * positions p0.. of the padded planes xp with wt ([ci*kh*kw][fr]). */
static inline __attribute__((always_inline)) void FN(direct_block)(
    const REAL *restrict xp, const REAL *restrict wt, REAL *restrict buf, int64_t p0, int64_t f0,
    int64_t ci, int64_t fr, int64_t kh, int64_t kw, int64_t dh, int64_t dw, int64_t hp, int64_t wp) {
    FN(dvec) acc[D_MR][D_NV] = {{{0}}};
    const int64_t plane = hp * wp;
    for (int64_t c = 0; c < ci; ++c) {
        const REAL *xc = xp + c * plane + p0;
        const REAL *wc = wt + c * kh * kw * fr + f0;
        for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j) {
                const REAL *xr = xc + i * dh * wp + j * dw;
                const REAL *w = wc + (i * kw + j) * fr;
                FN(tap)(acc, xr, w);
            }
    }
    FN(store_block)(acc, buf, f0);
}

/* All filter blocks at position block p0, with the common kernels'
 * sizes as constants (unrolled taps: ~2x the generic loop's speed). */
static void FN(direct_position_block)(const REAL *restrict xp, const REAL *restrict wt, REAL *restrict buf,
                                      int64_t p0, const FN(dgeom) *d) {
    for (int64_t f0 = 0; f0 < d->fr; f0 += D_MR) {
        if (d->off != NULL)
            FN(direct_block_table)(xp, d->off, d->taps, wt, buf, p0, f0, d->fr);
        else if (d->kh == 3 && d->kw == 3 && d->dh == 1 && d->dw == 1)
            FN(direct_block)(xp, wt, buf, p0, f0, d->ci, d->fr, 3, 3, 1, 1, d->hp, d->wp);
        else if (d->kh == 1 && d->kw == 1)
            FN(direct_block)(xp, wt, buf, p0, f0, d->ci, d->fr, 1, 1, 1, 1, d->hp, d->wp);
        else
            FN(direct_block)(xp, wt, buf, p0, f0, d->ci, d->fr, d->kh, d->kw, d->dh, d->dw, d->hp, d->wp);
    }
}

/* Where computed position (r, u) of a plane goes: row r is row
 * rr = r % d->period of image r / d->period (a stack), which is istride
 * elements after the previous one in the output; there it lands at
 * (rr*sy + ay, u*sx + ax) of an h x w output plane, if inside it. */
typedef struct {
    int64_t sy, ay, sx, ax, h, w, istride;
} FN(dplace);

/* Stride 1, outputs h x w per image (one image: istride unused). */
static const FN(dplace) *FN(dense)(FN(dplace) *place, int64_t h, int64_t w, int64_t istride) {
    *place = (FN(dplace)){1, 0, 1, 0, h, w, istride};
    return place;
}

/* The columns u < d->ow of a computed row that land inside pl's plane. */
static void FN(place_columns)(const FN(dgeom) *d, const FN(dplace) *pl, int64_t *u_lo, int64_t *u_hi) {
    *u_lo = pl->ax >= 0 ? 0 : (-pl->ax + pl->sx - 1) / pl->sx;
    *u_hi = fc_clamp(pl->w - 1 - pl->ax < 0 ? 0 : (pl->w - 1 - pl->ax) / pl->sx + 1, 0, d->ow);
}

/* out planes f < planes (pl->h x pl->w each) <- bias[f] + buf[f*bstride +
 * p - p0] for the computed positions p0 <= p < p0 + D_PB that pl places
 * inside them (columns u_lo <= u < u_hi of place_columns). */
static void FN(emit_block)(const REAL *restrict buf, int64_t planes, int64_t bstride, const REAL *restrict bias,
                           REAL *restrict out, int64_t p0, const FN(dgeom) *d, const FN(dplace) *pl, int64_t u_lo,
                           int64_t u_hi) {
    const int64_t oplane = pl->h * pl->w, end = p0 + D_PB < d->len ? p0 + D_PB : d->len;
    for (int64_t p = p0; p < end;) {
        const int64_t r = p / d->wp, u = p % d->wp, row = p - u;
        const int64_t run_end = row + d->wp < end ? row + d->wp : end; /* the rest of this row */
        const int64_t y = r % d->period * pl->sy + pl->ay;
        const int64_t q0 = u > u_lo ? u : u_lo, q1 = run_end - row < u_hi ? run_end - row : u_hi;
        if (y >= 0 && y < pl->h && q0 < q1) {
            REAL *img = out + r / d->period * pl->istride;
            for (int64_t f = 0; f < planes; ++f) {
                const REAL *src = buf + f * bstride + (row - p0);
                REAL *dst = img + f * oplane + y * pl->w + pl->ax;
                const REAL b = bias != NULL ? bias[f] : 0;
                if (pl->sx == 1)
                    for (int64_t q = q0; q < q1; ++q) dst[q] = src[q] + b;
                else
                    for (int64_t q = q0; q < q1; ++q) dst[q * pl->sx] = src[q] + b;
            }
        }
        p = run_end;
    }
}

/* A narrow register block for few output planes (mr <= 4 of them, as with
 * the input gradient of a first layer): mr filters x nv vectors, nv*DVEC =
 * (nv/D_NV) position blocks at once, from a tap table; buf holds them as mr
 * rows of nv*DVEC.  An 8-filter block would multiply zeros 8/mr times over. */
static inline __attribute__((always_inline)) void FN(narrow_block)(
    const REAL *restrict xp, const int64_t *restrict off, int64_t taps, const REAL *restrict wt,
    REAL *restrict buf, int64_t p0, int64_t fr, const int mr, const int nv) {
    FN(dvec) acc[4][4 * D_NV] = {{{0}}};
    for (int64_t k = 0; k < taps; ++k) {
        const REAL *xr = xp + off[k] + p0;
        const REAL *w = wt + k * fr;
        FN(dvec) xv[4 * D_NV];
        for (int v = 0; v < nv; ++v) xv[v] = FN(dload)(xr + v * DVEC);
        for (int m = 0; m < mr; ++m) {
            const REAL wv = w[m];
            for (int v = 0; v < nv; ++v) acc[m][v] += wv * xv[v];
        }
    }
    for (int m = 0; m < mr; ++m)
        for (int v = 0; v < nv; ++v) *(FN(dvec) *)(buf + m * nv * DVEC + v * DVEC) = acc[m][v];
}

/* out (fo planes of pl->h x pl->w) <- bias + correlation of the padded
 * planes xp with wt, at the places pl gives; buf: scratch of fr x D_PB. */
static void FN(direct_image)(const REAL *restrict xp, const REAL *restrict wt, const REAL *restrict bias,
                             REAL *restrict out, REAL *restrict buf, const FN(dgeom) *d, const FN(dplace) *pl) {
    int64_t u_lo, u_hi;
    FN(place_columns)(d, pl, &u_lo, &u_hi);
    int64_t p0 = 0;
    if (d->off != NULL && d->fo <= 4) { /* mr filters x (4/mr) position blocks, while whole ones fit */
        const int mr = d->fo <= 1 ? 1 : d->fo <= 2 ? 2 : 4, nb = 4 / mr, nv = nb * D_NV;
        for (; p0 + nb * D_PB <= d->lr; p0 += nb * D_PB) {
            if (mr == 1)
                FN(narrow_block)(xp, d->off, d->taps, wt, buf, p0, d->fr, 1, 4 * D_NV);
            else if (mr == 2)
                FN(narrow_block)(xp, d->off, d->taps, wt, buf, p0, d->fr, 2, 2 * D_NV);
            else
                FN(narrow_block)(xp, d->off, d->taps, wt, buf, p0, d->fr, 4, D_NV);
            for (int64_t s = 0; s < nb && p0 + s * D_PB < d->len; ++s)
                FN(emit_block)(buf + s * D_PB, d->fo, nv * DVEC, bias, out, p0 + s * D_PB, d, pl, u_lo, u_hi);
        }
    }
    for (; p0 < d->len; p0 += D_PB) {
        FN(direct_position_block)(xp, wt, buf, p0, d);
        FN(emit_block)(buf, d->fo, D_PB, bias, out, p0, d, pl, u_lo, u_hi);
    }
}

/* wt_out ([taps][fr], zero past fo) <- the weights (fo, ci, kh, kw) as the
 * kernel reads them; flip: the input gradient's weights, w[f, c] with the
 * kernel reversed, indexed [(f*kh + i)*kw + j][c]. */
static void FN(direct_weights)(const REAL *restrict w, REAL *restrict wt_out, int64_t f, int64_t c, int64_t kh,
                               int64_t kw, int64_t fr, int flip) {
    const int64_t taps = kh * kw;
    if (!flip) {
        memset(wt_out, 0, sizeof(REAL) * c * taps * fr);
        for (int64_t fi = 0; fi < f; ++fi)
            for (int64_t k = 0; k < c * taps; ++k) wt_out[k * fr + fi] = w[fi * c * taps + k];
        return;
    }
    /* input gradient: output planes are c (fr rounded from c), taps run over f */
    memset(wt_out, 0, sizeof(REAL) * f * taps * fr);
    for (int64_t fi = 0; fi < f; ++fi)
        for (int64_t ci = 0; ci < c; ++ci)
            for (int64_t t = 0; t < taps; ++t)
                wt_out[(fi * taps + t) * fr + ci] = w[(fi * c + ci) * taps + (taps - 1 - t)];
}

/* The geometry of a convolution's phase layout (split_phases; stride 1:
 * the padded planes) over `channels` channels and `fo` output planes
 * (rounded up to round_f), with its tap table `off` (channels*fh*fw
 * offsets, filled here) in the weights' own order (c, i, j). */
static FN(dgeom) FN(phase_geom)(const fc_conv_geom *g, int64_t *off, int64_t channels, int64_t fo,
                                int64_t round_f) {
    FC_CONV_LOCALS(g);
    (void)n, (void)c, (void)f;
    const int64_t hq = (h + 2 * ph + sh - 1) / sh, wq = (w + 2 * pw + sw - 1) / sw;
    FN(dgeom) d = FN(direct_geom)(channels * sh * sw, fo, 1, 1, 1, 1, hq, wq, ow, round_f);
    FN(set_rows)(&d, oh);
    for (int64_t ch = 0; ch < channels; ++ch)
        for (int64_t i = 0; i < fh; ++i)
            for (int64_t j = 0; j < fw; ++j)
                off[(ch * fh + i) * fw + j] = FN(phase_offset)(ch, i, j, dh, dw, sh, sw, 1, hq, wq);
    d.off = off;
    d.taps = channels * fh * fw;
    d.kw = fw * dw; /* padded_size's slack covers the column offsets (j*dw)/sw */
    return d;
}

/* d_w[e] (e < nw), then d_b (nb entries, if asked) <- the sums over the
 * blocks of parts (blocks x (nw + nb) doubles), in block order. */
static void FN(sum_blocks)(const double *restrict parts, int64_t blocks, int64_t nw, int64_t nb,
                           REAL *restrict d_w, REAL *restrict d_b) {
    for (int64_t e = 0; e < nw + nb; ++e) {
        double s = 0;
        for (int64_t blk = 0; blk < blocks; ++blk) s += parts[blk * (nw + nb) + e];
        if (e < nw) d_w[e] = (REAL)s;
        else if (d_b != NULL) d_b[e - nw] = (REAL)s;
    }
}

#include "conv_depthwise_tmpl.h"

int FN(fc_conv2d_direct_fwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict b,
                             REAL *restrict out, const fc_conv_geom *g) {
    if (!fc_direct_applies(g)) return FC_ERR_SIZE;
    FC_CONV_LOCALS(g);
    if (fc_check_conv_sizes(n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow) != FC_OK) return FC_ERR_SIZE;
    if (g->groups > 1) return FN(depthwise_fwd)(x, wt, b, out, g);
    const int strided = sh != 1 || sw != 1;
    int64_t *off = strided ? malloc(sizeof(int64_t) * c * fh * fw) : NULL;
    if (strided && off == NULL) return FC_ERR_NOMEM;
    /* tasks: stacks of `stack` images (stride 1), or single images */
    const int64_t stack = strided ? 1 : FN(stack_count)(FN(stack_geom)(c, f, fh, fw, dh, dw, h, w, ph, pw, 1, 1), n);
    const int64_t tasks = (n + stack - 1) / stack;
    const FN(dgeom) d = strided ? FN(phase_geom)(g, off, c, f, D_MR)
                                : FN(stack_geom)(c, f, fh, fw, dh, dw, h, w, ph, pw, stack, D_MR);
    REAL *wd = malloc(sizeof(REAL) * c * fh * fw * d.fr);
    if (wd == NULL) {
        free(off);
        return FC_ERR_NOMEM;
    }
    FN(direct_weights)(wt, wd, f, c, fh, fw, d.fr, 0);
    int nomem = 0;
#pragma omp parallel num_threads(fc_threads_for(2 * n * f * oh * ow * c * fh * fw))
    {
        REAL *xp = fc_alloc_lines(sizeof(REAL) * FN(padded_size)(&d));
        REAL *buf = fc_alloc_lines(sizeof(REAL) * d.fr * D_PB);
        if (xp == NULL || buf == NULL) {
#pragma omp atomic write
            nomem = 1;
        }
        int64_t zeroed_bc = 0; /* the stack size xp was cleared for */
        FN(dplace) place;
        FN(dense)(&place, oh, ow, f * oh * ow);
#pragma omp for schedule(static)
        for (int64_t task = 0; task < tasks; ++task) {
            if (xp == NULL || buf == NULL) continue;
            const int64_t img = task * stack, bc = n - img < stack ? n - img : stack;
            if (strided) {
                FN(split_phases)(x + img * c * h * w, xp, c, h, w, ph, pw, sh, sw, d.hp, d.wp, 1, 0,
                                 FN(padded_size)(&d), zeroed_bc == 1);
                FN(direct_image)(xp, wd, b, out + img * f * oh * ow, buf, &d, &place);
            } else {
                const FN(dgeom) ds = bc == stack ? d : FN(stack_geom)(c, f, fh, fw, dh, dw, h, w, ph, pw, bc, D_MR);
                FN(stack_planes)(x + img * c * h * w, xp, c, h, w, ph, pw, bc, &ds, zeroed_bc == bc);
                FN(direct_image)(xp, wd, b, out + img * f * oh * ow, buf, &ds, &place);
            }
            zeroed_bc = bc;
        }
        free(xp);
        free(buf);
    }
    free(wd);
    free(off);
    return nomem ? FC_ERR_NOMEM : FC_OK;
}

/* sums[m*D_GT + t] <- the sum of the lanes of acc[m][t] (in a fixed order).
 * A transpose-reduce where the lanes are 16 or 8: each level adds the two
 * halves of every block of lanes of two vectors, so D_LANES accumulators
 * become one vector of their D_LANES sums (in bit-reversed order of the
 * inputs, hence the input order) -- 15 adds and 30 shuffles for 16, where
 * summing lane by lane took 240 scalar adds and a quarter of the weight
 * gradient's time. */
#if FC_REAL_IS_FLOAT
#define D_LANES (FC_VBYTES / 4)
#else
#define D_LANES (FC_VBYTES / 8)
#endif
/* The sum of v's lanes as a tree (halves added), for the accumulators left
 * over after whole groups of D_LANES. */
static inline REAL FN(lane_tree)(FN(dvec) v) {
    REAL lanes[DVEC];
    memcpy(lanes, &v, sizeof lanes);
    for (int64_t half = DVEC / 2; half >= 1; half /= 2)
        for (int64_t e = 0; e < half; ++e) lanes[e] += lanes[e + half];
    return lanes[0];
}

static inline void FN(lane_sums)(FN(dvec) acc[D_GF][D_GT], REAL *restrict sums) {
    int g = 0;
#if D_LANES == 16 || D_LANES == 8
#if D_LANES == 16
    static const int order[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};
    const FN(lane_mask) masks[4][2] = {
        {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}, {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}},
        {{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}, {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}},
        {{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}, {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}},
        {{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}, {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}}};
    enum { levels = 4 };
#else
    static const int order[8] = {0, 4, 2, 6, 1, 5, 3, 7};
    const FN(lane_mask) masks[3][2] = {{{0, 1, 2, 3, 8, 9, 10, 11}, {4, 5, 6, 7, 12, 13, 14, 15}},
                                       {{0, 1, 8, 9, 4, 5, 12, 13}, {2, 3, 10, 11, 6, 7, 14, 15}},
                                       {{0, 8, 2, 10, 4, 12, 6, 14}, {1, 9, 3, 11, 5, 13, 7, 15}}};
    enum { levels = 3 };
#endif
    for (; g + D_LANES <= D_GF * D_GT; g += D_LANES) {
        FN(dvec) v[D_LANES];
        for (int j = 0; j < D_LANES; ++j) v[j] = acc[(g + order[j]) / D_GT][(g + order[j]) % D_GT];
        int count = D_LANES;
        for (int l = 0; l < levels; ++l, count /= 2)
            for (int k = 0; k < count / 2; ++k)
                v[k] = __builtin_shuffle(v[2 * k], v[2 * k + 1], masks[l][0]) +
                       __builtin_shuffle(v[2 * k], v[2 * k + 1], masks[l][1]);
        memcpy(sums + g, &v[0], sizeof(v[0]));
    }
#endif
    for (; g < D_GF * D_GT; ++g) sums[g] = FN(lane_tree)(acc[g / D_GT][g % D_GT]);
}
#undef D_LANES

/* part[f*taps_all + k] += sum over positions of dyf[f] * xp[off[k] + .] for
 * every filter and tap (dyf: fr rows of lr, zero at non-output positions). */
static void FN(direct_weight_grad)(const REAL *restrict xp, const REAL *restrict dyf, const int64_t *restrict off,
                                   double *restrict part, int64_t f, int64_t fr, int64_t taps, int64_t lr) {
    const int64_t tr = (taps + D_GT - 1) / D_GT * D_GT;
    for (int64_t f0 = 0; f0 < fr; f0 += D_GF) {
        for (int64_t k0 = 0; k0 < tr; k0 += D_GT) {
            FN(dvec) acc[D_GF][D_GT];
            for (int m = 0; m < D_GF; ++m)
                for (int t = 0; t < D_GT; ++t) acc[m][t] = (FN(dvec)){0};
            const REAL *xs[D_GT];
            for (int t = 0; t < D_GT; ++t) xs[t] = xp + off[k0 + t];
            for (int64_t p = 0; p < lr; p += DVEC) {
                FN(dvec) dv[D_GF], xv[D_GT];
                for (int m = 0; m < D_GF; ++m) dv[m] = FN(dload)(dyf + (f0 + m) * lr + p);
                for (int t = 0; t < D_GT; ++t) xv[t] = FN(dload)(xs[t] + p);
                for (int m = 0; m < D_GF; ++m)
                    for (int t = 0; t < D_GT; ++t) acc[m][t] += dv[m] * xv[t];
            }
            REAL sums[D_GF * D_GT];
            FN(lane_sums)(acc, sums);
            for (int m = 0; m < D_GF; ++m) {
                if (f0 + m >= f) break;
                for (int t = 0; t < D_GT && k0 + t < taps; ++t) part[(f0 + m) * taps + k0 + t] += sums[m * D_GT + t];
            }
        }
    }
}

int FN(fc_conv2d_direct_bwd)(const REAL *restrict x, const REAL *restrict wt, const REAL *restrict d_out,
                             REAL *restrict d_x, REAL *restrict d_w, REAL *restrict d_b, const fc_conv_geom *g) {
    if (!fc_direct_applies(g)) return FC_ERR_SIZE;
    FC_CONV_LOCALS(g);
    if (fc_check_conv_sizes(n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow) != FC_OK) return FC_ERR_SIZE;
    if (g->groups > 1) return FN(depthwise_bwd)(x, wt, d_out, d_x, d_w, d_b, g);
    const int64_t taps = c * fh * fw, hw = h * w, ohw = oh * ow, phases = sh * sw;
    const int strided = phases > 1;
    /* strided: the input's phase planes */
    const int64_t hq = (h + 2 * ph + sh - 1) / sh, wq = (w + 2 * pw + sw - 1) / sw, plane = hq * wq;
    /* input gradient, stride 1: dy padded by (k-1)*d - p, correlated with the
     * flipped weights.  Strided: per phase (a, b) of the padded input, the
     * taps (i, j) landing on it ((i*dh) % sh == a, (j*dw) % sw == b) read dy
     * padded by (tq, lq) at a fixed offset each: sh*sw stride-1 correlations
     * whose outputs are scattered sh, sw apart. */
    const int64_t qh = (fh - 1) * dh - ph, qw = (fw - 1) * dw - pw;
    const int64_t tq = (fh - 1) * dh / sh, lq = (fw - 1) * dw / sw;
    const int64_t blocks = n < FC_GRAD_BLOCKS ? n : FC_GRAD_BLOCKS; /* from n alone (common.h) */
    /* images per stack, within a block: stride 1, x and dy stacked as in the
     * forward (stack_geom), for the weight gradient and the input gradient;
     * strided, x's phase planes side by side along the positions -- small
     * maps still give long runs of positions */
    const int64_t per_block = (n + blocks - 1) / blocks;
    const FN(dgeom) x1 = FN(stack_geom)(c, f, fh, fw, dh, dw, h, w, ph, pw, 1, 1);
    const int64_t per_image = strided ? plane : x1.period * x1.wp;
    const int64_t stack = fc_clamp((1024 + per_image - 1) / per_image, 1, per_block);
    FN(dgeom) dx_g = strided ? FN(direct_geom)(f, c, 1, fw, 1, dw, hq + tq, wq + lq, wq, D_MR)
                             : FN(stack_geom)(f, c, fh, fw, dh, dw, oh, ow, qh, qw, stack, D_MR);
    if (strided) FN(set_rows)(&dx_g, hq); /* every phase row and column */
    const FN(dgeom) xg = FN(stack_geom)(c, f, fh, fw, dh, dw, h, w, ph, pw, stack, 1);
    const int64_t fr = (f + D_GF - 1) / D_GF * D_GF;
    const int64_t lr_max = ((strided ? stack * plane : xg.len) + DVEC - 1) / DVEC * DVEC;
    const int64_t xs_size = strided ? c * phases * stack * plane + lr_max + fw * dw + 2 * DVEC : FN(padded_size)(&xg);
    const int narrow = d_x != NULL && !strided && c <= 4; /* the narrow blocks, which read a tap table */
    double *parts = calloc((size_t)(blocks * (f * taps + f)), sizeof(double));
    REAL *wflip = d_x != NULL ? malloc(sizeof(REAL) * f * fh * fw * dx_g.fr) : NULL;
    int64_t *dx_off = d_x != NULL && strided ? malloc(sizeof(int64_t) * f * fh * fw) : NULL;
    int64_t *dx_first = malloc(sizeof(int64_t) * (phases + 1)); /* phase q's taps: dx_first[q] .. [q+1] */
    if (parts == NULL || dx_first == NULL || (d_x != NULL && wflip == NULL) || (d_x != NULL && strided && dx_off == NULL)) {
        free(parts), free(wflip), free(dx_off), free(dx_first);
        return FC_ERR_NOMEM;
    }
    if (d_x != NULL && !strided) FN(direct_weights)(wt, wflip, f, c, fh, fw, dx_g.fr, 1);
    if (d_x != NULL && strided) { /* each phase's taps: offsets into padded dy, weights [tap][c] */
        memset(wflip, 0, sizeof(REAL) * f * fh * fw * dx_g.fr);
        int64_t t = 0;
        for (int64_t a = 0; a < sh; ++a)
            for (int64_t b = 0; b < sw; ++b) {
                dx_first[a * sw + b] = t;
                for (int64_t fi = 0; fi < f; ++fi)
                    for (int64_t i = 0; i < fh; ++i)
                        for (int64_t j = 0; j < fw; ++j) {
                            if ((i * dh) % sh != a || (j * dw) % sw != b) continue;
                            dx_off[t] = (fi * dx_g.hp + tq - i * dh / sh) * dx_g.wp + lq - j * dw / sw;
                            for (int64_t ci = 0; ci < c; ++ci)
                                wflip[t * dx_g.fr + ci] = wt[((fi * c + ci) * fh + i) * fw + j];
                            ++t;
                        }
            }
        dx_first[phases] = t;
    }
    int nomem = 0;
#pragma omp parallel num_threads(fc_threads_for(4 * n * f * ohw * taps))
    {
        REAL *xs = fc_alloc_lines(sizeof(REAL) * xs_size);
        REAL *dyf = fc_alloc_lines(sizeof(REAL) * (fr * lr_max + DVEC));
        int64_t *off = malloc(sizeof(int64_t) * (taps + D_GT));
        REAL *dyp = d_x != NULL ? fc_alloc_lines(sizeof(REAL) * FN(padded_size)(&dx_g)) : NULL;
        REAL *buf = d_x != NULL ? fc_alloc_lines(sizeof(REAL) * dx_g.fr * D_PB) : NULL;
        int64_t *nar_off = narrow ? malloc(sizeof(int64_t) * f * fh * fw) : NULL;
        REAL *dxq = d_x != NULL && strided ? malloc(sizeof(REAL) * phases * c * plane) : NULL; /* dx's phases */
        const int ok = xs != NULL && dyf != NULL && off != NULL && (d_x == NULL || (dyp != NULL && buf != NULL)) &&
                       (!narrow || nar_off != NULL) && (d_x == NULL || !strided || dxq != NULL);
        if (!ok) {
#pragma omp atomic write
            nomem = 1;
        }
        int64_t zeroed_bc = 0; /* the stack size the buffers were cleared for */
        int dx_zeroed = 0;
        FN(dgeom) xgs = xg, dxs = dx_g; /* stride 1: the layouts of this stack */
        int64_t lr = lr_max;
        FN(dplace) place;
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; ++blk) {
            if (!ok) continue;
            double *part = parts + blk * (f * taps + f);
            const int64_t first = blk * n / blocks, last = (blk + 1) * n / blocks;
            for (int64_t img0 = first; img0 < last; img0 += stack) {
                const int64_t bc = last - img0 < stack ? last - img0 : stack;
                if (bc != zeroed_bc) { /* a new stack size: its layouts, cleared buffers */
                    if (strided) {
                        lr = (bc * plane + DVEC - 1) / DVEC * DVEC;
                    } else {
                        xgs = FN(stack_geom)(c, f, fh, fw, dh, dw, h, w, ph, pw, bc, 1);
                        dxs = FN(stack_geom)(f, c, fh, fw, dh, dw, oh, ow, qh, qw, bc, D_MR);
                        lr = (xgs.len + DVEC - 1) / DVEC * DVEC;
                    }
                    if (narrow) {
                        for (int64_t fi = 0; fi < f; ++fi)
                            for (int64_t i = 0; i < fh; ++i)
                                for (int64_t j = 0; j < fw; ++j)
                                    nar_off[(fi * fh + i) * fw + j] = (fi * dxs.hp + i * dh) * dxs.wp + j * dw;
                        dxs.off = nar_off;
                        dxs.taps = f * fh * fw;
                    }
                    for (int64_t ch = 0; ch < c; ++ch)
                        for (int64_t i = 0; i < fh; ++i)
                            for (int64_t j = 0; j < fw; ++j)
                                off[(ch * fh + i) * fw + j] =
                                    strided ? FN(phase_offset)(ch, i, j, dh, dw, sh, sw, bc, hq, wq)
                                            : (ch * xgs.hp + i * dh) * xgs.wp + j * dw;
                    for (int64_t k = taps; k < taps + D_GT; ++k) off[k] = 0; /* the last tap block's spare lanes */
                    memset(xs, 0, sizeof(REAL) * xs_size);
                    memset(dyf, 0, sizeof(REAL) * fr * lr);
                    zeroed_bc = bc;
                    dx_zeroed = 0;
                }
                /* xs: x in its layout; dyf: row fi holds dy of filter fi at
                 * the positions the layout computes (zero elsewhere) */
                const REAL *xi = x + img0 * c * hw, *dy = d_out + img0 * f * ohw;
                if (!strided) FN(stack_planes)(xi, xs, c, h, w, ph, pw, bc, &xgs, 1);
                for (int64_t b = 0; b < bc; ++b) {
                    if (strided) FN(split_phases)(xi + b * c * hw, xs, c, h, w, ph, pw, sh, sw, hq, wq, bc, b, xs_size, 1);
                    const int64_t at = strided ? b * plane : b * xgs.period * xgs.wp, row = strided ? wq : xgs.wp;
                    for (int64_t fi = 0; fi < f; ++fi)
                        for (int64_t y = 0; y < oh; ++y)
                            memcpy(dyf + fi * lr + at + y * row, dy + ((b * f + fi) * oh + y) * ow, sizeof(REAL) * ow);
                }
                /* the bias gradient: each padded row's sum, in vectors (a scalar
                 * double sum here took a fifth of the weight gradient's time) */
                for (int64_t fi = 0; fi < f && d_b != NULL; ++fi) {
                    FN(dvec) acc = {0};
                    for (int64_t p = 0; p < lr; p += DVEC) acc += FN(dload)(dyf + fi * lr + p);
                    double sum = 0;
                    for (int64_t e = 0; e < DVEC; ++e) sum += acc[e];
                    part[f * taps + fi] += sum;
                }
                FN(direct_weight_grad)(xs, dyf, off, part, f, fr, taps, lr);
                if (d_x == NULL) continue;
                if (!strided) {
                    FN(stack_planes)(dy, dyp, f, oh, ow, qh, qw, bc, &dxs, dx_zeroed);
                    FN(direct_image)(dyp, wflip, NULL, d_x + img0 * c * hw, buf, &dxs, FN(dense)(&place, h, w, c * hw));
                    dx_zeroed = 1;
                    continue;
                }
                for (int64_t b = 0; b < bc; ++b) { /* phase by phase into dxq, then put together */
                    FN(stack_planes)(dy + b * f * ohw, dyp, f, oh, ow, tq, lq, 1, &dx_g, dx_zeroed);
                    if (!dx_zeroed) memset(dxq, 0, sizeof(REAL) * phases * c * plane); /* phases no tap reaches */
                    dx_zeroed = 1;
                    for (int64_t q = 0; q < phases; ++q) {
                        if (dx_first[q + 1] == dx_first[q]) continue;
                        FN(dgeom) dq = dx_g;
                        dq.off = dx_off + dx_first[q];
                        dq.taps = dx_first[q + 1] - dx_first[q];
                        FN(direct_image)(dyp, wflip + dx_first[q] * dx_g.fr, NULL, dxq + q * c * plane, buf, &dq,
                                         FN(dense)(&place, hq, wq, 0));
                    }
                    FN(merge_phases)(dxq, d_x + (img0 + b) * c * hw, c, h, w, ph, pw, sh, sw, hq, wq);
                }
            }
        }
        free(xs);
        free(dyf);
        free(off);
        free(dyp);
        free(buf);
        free(nar_off);
        free(dxq);
    }
    if (!nomem) FN(sum_blocks)(parts, blocks, f * taps, f, d_w, d_b);
    free(parts);
    free(wflip);
    free(dx_off);
    free(dx_first);
    return nomem ? FC_ERR_NOMEM : FC_OK;
}

#include "conv_ocvec_tmpl.h" /* uses dvec, DVEC and the layouts above */

#undef D_PB
#undef D_MR
#undef D_NV
#undef D_GF
#undef D_GT
#undef DVEC
