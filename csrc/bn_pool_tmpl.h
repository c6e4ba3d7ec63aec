/* BatchNorm's affine + ReLU + max pool as one stage, for one element type
 * (included by batchnorm.c after batchnorm_tmpl.h; fastconv/layers/fused.py
 * BatchNormReLUPool runs it).  x and d_x are (N, C, H, W); out, code and
 * d_out are the pooled (N, C, OH, OW).
 *
 * Forward: out = max(max over the window of x * scale[c] + shift[c], 0) and
 * code = i * kw + j, the winner's offset in its window (the winner of the
 * values before the ReLU: pooling after the ReLU gives the same output and
 * the same gradients, see fused.py).  The full-resolution BatchNorm output
 * is never written, nor read back by a separate pool.
 * Backward: the pooled gradient counts where out > 0; its two BatchNorm sums
 * over the winners (reduce), then the closed-form d_x, dense, with the
 * gradient added at the winners (apply) -- no dense gradient of the pool.
 * The windows do not overlap (stride >= window), no padding, floor mode
 * (fc_bnpool_check): every input position is in at most one window. */

#include "maxpool_plane_tmpl.h" /* beats, beats_nb: the pool's winner and NaN policy */

/* The winner of one 2x2 window, values v0 v1 (top row) v2 v3: a pairwise
 * tournament in pure arithmetic, no branch to mispredict (as maxpool_plane's
 * pool22_short), the same winner as the row-major scan: ties and later NaNs
 * never displace an earlier element.  Writes max(best, 0) (NaN stays NaN, as
 * the ReLU) and the winner's offset. */
static inline void FN(bnpool22_one)(REAL v0, REAL v1, REAL v2, REAL v3, REAL *restrict o,
                                    uint8_t *restrict code) {
    const int tb = FN(beats_nb)(v1, v0), bd = FN(beats_nb)(v3, v2);
    const REAL top = tb ? v1 : v0, bottom = bd ? v3 : v2;
    const int down = FN(beats_nb)(bottom, top);
    const REAL best = down ? bottom : top;
    *o = best < 0 ? 0 : best;
    *code = (uint8_t)(down ? 2 + bd : tb);
}

/* 2x2/2 windows of one output row, outputs [ox0, ox0 + 8): the row-major
 * scan with branches on the running best, which gcc vectorises into selects
 * when the codes go through int lanes first (with one-byte codes in the loop
 * it picked 64 lanes, which rows of 8..63 outputs never reached). */
static inline void FN(bnpool22_chunk)(const REAL *restrict r0, const REAL *restrict r1, REAL a, REAL b,
                                      REAL *restrict o, uint8_t *restrict code, int64_t ox0) {
    int32_t kk[8];
    for (int q = 0; q < 8; ++q) {
        const int64_t x0 = 2 * (ox0 + q);
        const REAL v0 = r0[x0] * a + b, v1 = r0[x0 + 1] * a + b, v2 = r1[x0] * a + b, v3 = r1[x0 + 1] * a + b;
        REAL best = v0;
        int32_t k = 0;
        if (FN(beats)(v1, best)) { best = v1; k = 1; }
        if (FN(beats)(v2, best)) { best = v2; k = 2; }
        if (FN(beats)(v3, best)) { best = v3; k = 3; }
        o[ox0 + q] = best < 0 ? 0 : best; /* NaN stays NaN, as the ReLU */
        kk[q] = k;
    }
    for (int q = 0; q < 8; ++q) code[ox0 + q] = (uint8_t)kk[q];
}

/* An output row shorter than a chunk (OW < 8): one chunk (4x faster than a
 * scalar loop, whose branches mispredict on random data) that reads past the
 * row -- in place when `over` (the caller knows the array holds 16 values
 * from each row's start), else from zero-padded copies -- into buffers, of
 * which the row's OW outputs are kept. */
static inline void FN(bnpool22_short)(const REAL *restrict r0, const REAL *restrict r1, REAL a, REAL b,
                                      REAL *restrict o, uint8_t *restrict code, int64_t ow, int over) {
    REAL ob[8];
    uint8_t cb[8];
    if (over) {
        FN(bnpool22_chunk)(r0, r1, a, b, ob, cb, 0);
    } else {
        REAL t0[16] = {0}, t1[16] = {0};
        for (int64_t i = 0; i < 2 * ow; ++i) {
            t0[i] = r0[i];
            t1[i] = r1[i];
        }
        FN(bnpool22_chunk)(t0, t1, a, b, ob, cb, 0);
    }
    /* a fixed trip count with a condition: masked vector stores */
    for (int q = 0; q < 8; ++q)
        if (q < ow) o[q] = ob[q];
    for (int q = 0; q < 8; ++q)
        if (q < ow) code[q] = cb[q];
}

/* One (H, W) plane of the forward, scale a and shift b. */
/* `readable`: how many values from xp on the array holds (the short rows'
 * copies may read past the plane). */
static inline void FN(bnpool_plane)(const REAL *restrict xp, int64_t readable, REAL a, REAL b, REAL *restrict o,
                                    uint8_t *restrict code, const fc_pool_geom *g) {
    const int64_t w = g->w, kh = g->kh, kw = g->kw, sh = g->sh, sw = g->sw, oh = g->oh, ow = g->ow;
    if (kh == 2 && kw == 2 && sh == 2 && sw == 2) {
        for (int64_t oy = 0; oy < oh; ++oy) {
            const REAL *r0 = xp + 2 * oy * w, *r1 = r0 + w;
            REAL *orow = o + oy * ow;
            uint8_t *crow = code + oy * ow;
            if (ow < 8) {
                FN(bnpool22_short)(r0, r1, a, b, orow, crow, ow, (2 * oy + 1) * w + 16 <= readable);
                continue;
            }
            for (int64_t ox0 = 0; ox0 + 8 <= ow; ox0 += 8) FN(bnpool22_chunk)(r0, r1, a, b, orow, crow, ox0);
            /* the tail as one more chunk overlapping the last (recomputing a few
             * outputs is harmless; a scalar tail mispredicts on random data) */
            if (ow % 8) FN(bnpool22_chunk)(r0, r1, a, b, orow, crow, ow - 8);
        }
        return;
    }
    for (int64_t oy = 0; oy < oh; ++oy) {
        for (int64_t ox = 0; ox < ow; ++ox) {
            const REAL *win = xp + oy * sh * w + ox * sw;
            REAL best = win[0] * a + b;
            int k = 0;
            for (int64_t i = 0; i < kh; ++i)
                for (int64_t j = 0; j < kw; ++j) {
                    const REAL v = win[i * w + j] * a + b;
                    if (FN(beats)(v, best)) { best = v; k = (int)(i * kw + j); }
                }
            o[oy * ow + ox] = best < 0 ? 0 : best;
            code[oy * ow + ox] = (uint8_t)k;
        }
    }
}

int FN(fc_bnpool_fwd)(const REAL *restrict x, const REAL *restrict scale, const REAL *restrict shift,
                      REAL *restrict out, uint8_t *restrict code, const fc_pool_geom *g) {
    const int status = fc_bnpool_check(g);
    if (status != FC_OK) return status;
    const int64_t c = g->c, hw = g->h * g->w, ohw = g->oh * g->ow;
#pragma omp parallel for num_threads(fc_threads_for(g->n * c * hw)) schedule(static)
    for (int64_t p = 0; p < g->n * c; ++p)
        FN(bnpool_plane)(x + p * hw, (g->n * c - p) * hw, scale[p % c], shift[p % c], out + p * ohw, code + p * ohw,
                         g);
    return FC_OK;
}

/* sum_dy[c] = sum(dy), sum_dy_xmu[c] = sum(dy * (x - mean[c])) over the
 * winners whose output is > 0 (dy: the pooled gradient), in fixed image
 * blocks added in order (as fc_bn_bwd_reduce: the same sums at any thread
 * count).  A code outside its window is counted, skipped, and reported
 * (FC_ERR_INDEX). */
/* The 2x2/2 backward in chunks of 8 outputs of one row, written with GCC's
 * vector extensions (lowered to whatever the build's -march has: SSE to
 * AVX-512): gcc's vectoriser gave up on both loops (selects by the code,
 * interleaved rows), and the scalar loops mispredict on the output's random
 * sign.  A vector of 8 REALs; its comparisons give FN(vmask) lanes. */
/* Only where the ISA has 256-bit vectors (x86-64-v3 and up): lowered to SSE
 * (x86-64-v2) the shuffles made it 2-3x slower than the scalar loops. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX2__)
#define FC_BNPOOL_VECTOR 1
/* the vectors never cross a call boundary (static inline): no ABI to keep */
#pragma GCC diagnostic ignored "-Wpsabi"
#if FC_REAL_IS_FLOAT
typedef int32_t FN(lane_int);
#else
typedef int64_t FN(lane_int);
#endif
typedef REAL FN(vec) __attribute__((vector_size(8 * sizeof(REAL))));
typedef FN(lane_int) FN(vmask) __attribute__((vector_size(8 * sizeof(REAL))));
typedef double FN(vec_d) __attribute__((vector_size(64)));

static inline FN(vec) FN(vload)(const REAL *p) {
    FN(vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Lanes selected by mask m (all ones or zero), others 0. */
static inline FN(vec) FN(vkeep)(FN(vec) v, FN(vmask) m) { return (FN(vec))((FN(vmask))v & m); }

/* The window values of outputs [ox0, ox0 + 8) of one row pair: top-left,
 * top-right, bottom-left, bottom-right (even and odd columns of each row). */
static inline void FN(window8)(const REAL *r0, const REAL *r1, int64_t ox0, FN(vec) v[4]) {
    const FN(vmask) even = {0, 2, 4, 6, 8, 10, 12, 14}, odd = even + 1;
    const FN(vec) t0 = FN(vload)(r0 + 2 * ox0), t1 = FN(vload)(r0 + 2 * ox0 + 8);
    const FN(vec) b0 = FN(vload)(r1 + 2 * ox0), b1 = FN(vload)(r1 + 2 * ox0 + 8);
    v[0] = __builtin_shuffle(t0, t1, even);
    v[1] = __builtin_shuffle(t0, t1, odd);
    v[2] = __builtin_shuffle(b0, b1, even);
    v[3] = __builtin_shuffle(b0, b1, odd);
}

static inline FN(vmask) FN(codes8)(const uint8_t *cp) {
    FN(vmask) k; /* lane by lane: gcc widens it in one instruction (from an 8-byte vector, byte by byte) */
    for (int q = 0; q < 8; ++q) k[q] = cp[q];
    return k;
}

/* Lanes q with lo <= q < hi: the outputs a chunk counts (an overlapping
 * tail chunk only its new ones, a short row only its own). */
static inline FN(vmask) FN(lanes)(int64_t lo, int64_t hi) {
    const FN(vmask) lane = {0, 1, 2, 3, 4, 5, 6, 7};
    return (lane >= (FN(lane_int))lo) & (lane < (FN(lane_int))hi);
}

/* Rows of fewer than 8 outputs run one chunk that reads past the row (what it
 * computes there is dropped): in place where the arrays hold what it reads
 * (`in_place`), else from zero-padded copies (the last rows of the tensor). */
struct FN(short_row) {
    REAL t0[16], t1[16], g[8], o[8];
    uint8_t c[8];
};
static inline void FN(short_copy)(struct FN(short_row) *r, const REAL *r0, const REAL *r1, const REAL *gp,
                                  const REAL *op, const uint8_t *cp, int64_t ow) {
    memset(r, 0, sizeof *r);
    for (int64_t i = 0; i < 2 * ow; ++i) {
        r->t0[i] = r0[i];
        r->t1[i] = r1[i];
    }
    for (int64_t q = 0; q < ow; ++q) {
        r->g[q] = gp[q];
        r->o[q] = op[q];
        r->c[q] = cp[q];
    }
}

/* Sums of the outputs ox0 + q of one row whose lane q is set in `mine`, into per-lane double
 * accumulators (vertical adds: no reassociation, the same sums on any
 * machine); a bad code counts nothing and adds -1 to its lane of acc_bad. */
static inline void FN(bnpool22_sums8)(const REAL *restrict r0, const REAL *restrict r1, const REAL *restrict gp,
                                      const REAL *restrict op, const uint8_t *restrict cp, int64_t ox0,
                                      FN(vmask) mine, double m, FN(vec_d) *acc_a, FN(vec_d) *acc_b,
                                      FN(vmask) *acc_bad) {
    FN(vec) v[4];
    FN(window8)(r0, r1, ox0, v);
    const FN(vmask) k = FN(codes8)(cp + ox0);
    const FN(vec) xw = (FN(vec))(((FN(vmask))v[0] & (k == 0)) | ((FN(vmask))v[1] & (k == 1)) |
                                 ((FN(vmask))v[2] & (k == 2)) | ((FN(vmask))v[3] & (k == 3)));
    const FN(vec) zero = {0};
    const FN(vmask) use = mine & (k <= 3) & (FN(vload)(op + ox0) > zero);
    const FN(vec_d) gv = __builtin_convertvector(FN(vkeep)(FN(vload)(gp + ox0), use), FN(vec_d));
    *acc_a += gv;
    *acc_b += gv * (__builtin_convertvector(xw, FN(vec_d)) - m);
    *acc_bad += mine & (k > 3); /* -1 per bad code */
}

/* The bad codes an accumulator of -1 per lane counted. */
static inline int64_t FN(bad_count)(FN(vmask) acc) {
    int64_t count = 0;
    for (int q = 0; q < 8; ++q) count -= acc[q];
    return count;
}

/* d_x of the 2x2 windows of outputs [ox0, ox0 + 8) of one row pair: each
 * window's four values, dy at its winner (none with a bad code), as
 * bn_bwd_apply_plane's formula; bad codes of the lanes in `mine` add -1 to acc_bad. */
static inline void FN(bnpool22_apply8)(const REAL *restrict r0, const REAL *restrict r1,
                                          const REAL *restrict gp, const REAL *restrict op,
                                          const uint8_t *restrict cp, int64_t ox0, FN(vmask) mine, REAL a,
                                          REAL b, REAL z, REAL m, REAL *restrict d0, REAL *restrict d1,
                                          FN(vmask) *acc_bad) {
    FN(vec) v[4];
    FN(window8)(r0, r1, ox0, v);
    const FN(vmask) k = FN(codes8)(cp + ox0);
    const FN(vec) zero = {0};
    const FN(vec) gv = FN(vkeep)(FN(vload)(gp + ox0), FN(vload)(op + ox0) > zero);
    FN(vec) d[4];
    for (int q = 0; q < 4; ++q) d[q] = FN(vkeep)(gv, k == q) * a + (v[q] - m) * b + z;
    const FN(vmask) lo = {0, 8, 1, 9, 2, 10, 3, 11}, hi = lo + 4;
    const FN(vec) w00 = __builtin_shuffle(d[0], d[1], lo), w01 = __builtin_shuffle(d[0], d[1], hi);
    const FN(vec) w10 = __builtin_shuffle(d[2], d[3], lo), w11 = __builtin_shuffle(d[2], d[3], hi);
    memcpy(d0 + 2 * ox0, &w00, sizeof w00);
    memcpy(d0 + 2 * ox0 + 8, &w01, sizeof w01);
    memcpy(d1 + 2 * ox0, &w10, sizeof w10);
    memcpy(d1 + 2 * ox0 + 8, &w11, sizeof w11);
    *acc_bad += mine & (k > 3);
}

/* bnpool_plane_sums for 2x2/2 windows; the arrays hold `readable_x` values
 * from xp on and `readable_p` from gp, op and cp on (short rows read past). */
static inline int64_t FN(bnpool22_plane_sums)(const REAL *restrict gp, const REAL *restrict xp,
                                              const REAL *restrict op, const uint8_t *restrict cp, double m,
                                              const fc_pool_geom *g, int64_t readable_x, int64_t readable_p,
                                              double *pa, double *pb) {
    const int64_t w = g->w, ow = g->ow, oh = g->oh;
    FN(vec_d) acc_a = {0}, acc_b = {0};
    FN(vmask) bad = {0};
    for (int64_t oy = 0; oy < oh; ++oy) {
        const REAL *r0 = xp + 2 * oy * w, *r1 = r0 + w;
        const REAL *grow = gp + oy * ow, *orow = op + oy * ow;
        const uint8_t *crow = cp + oy * ow;
        if (ow < 8) {
            const FN(vmask) mine = FN(lanes)(0, ow);
            if ((2 * oy + 1) * w + 16 <= readable_x && oy * ow + 8 <= readable_p) {
                FN(bnpool22_sums8)(r0, r1, grow, orow, crow, 0, mine, m, &acc_a, &acc_b, &bad);
            } else {
                struct FN(short_row) r;
                FN(short_copy)(&r, r0, r1, grow, orow, crow, ow);
                FN(bnpool22_sums8)(r.t0, r.t1, r.g, r.o, r.c, 0, mine, m, &acc_a, &acc_b, &bad);
            }
            continue;
        }
        for (int64_t ox0 = 0; ox0 + 8 <= ow; ox0 += 8)
            FN(bnpool22_sums8)(r0, r1, grow, orow, crow, ox0, FN(lanes)(0, 8), m, &acc_a, &acc_b, &bad);
        /* the tail: one more chunk overlapping the last, its overlap not counted */
        if (ow % 8)
            FN(bnpool22_sums8)(r0, r1, grow, orow, crow, ow - 8, FN(lanes)(8 - ow % 8, 8), m, &acc_a, &acc_b, &bad);
    }
    double a = 0, b = 0;
    for (int q = 0; q < 8; ++q) {
        a += acc_a[q];
        b += acc_b[q];
    }
    *pa += a;
    *pb += b;
    return FN(bad_count)(bad);
}

/* The apply of one plane for 2x2/2 windows (readable_x, readable_p as the
 * sums); what no window covers (an odd last row or column) first as the
 * dense formula.  The overlapping tail chunk rewrites the same values; a
 * short row's chunk is computed into a buffer and only its row copied out. */
static inline int64_t FN(bnpool22_plane_apply)(const REAL *restrict gp, const REAL *restrict xp,
                                               const REAL *restrict op, const uint8_t *restrict cp, REAL a, REAL b,
                                               REAL z, REAL m, REAL *restrict dp, const fc_pool_geom *g,
                                               int64_t readable_x, int64_t readable_p) {
    const int64_t h = g->h, w = g->w, ow = g->ow, oh = g->oh;
    FN(vmask) bad = {0};
    if (2 * oh != h || 2 * ow != w)
        for (int64_t k = 0; k < h * w; ++k) dp[k] = (xp[k] - m) * b + z;
    for (int64_t oy = 0; oy < oh; ++oy) {
        const REAL *r0 = xp + 2 * oy * w, *r1 = r0 + w;
        const REAL *grow = gp + oy * ow, *orow = op + oy * ow;
        const uint8_t *crow = cp + oy * ow;
        REAL *d0 = dp + 2 * oy * w, *d1 = d0 + w;
        if (ow < 8) {
            const FN(vmask) mine = FN(lanes)(0, ow);
            REAL e0[16], e1[16];
            if ((2 * oy + 1) * w + 16 <= readable_x && oy * ow + 8 <= readable_p) {
                FN(bnpool22_apply8)(r0, r1, grow, orow, crow, 0, mine, a, b, z, m, e0, e1, &bad);
            } else {
                struct FN(short_row) r;
                FN(short_copy)(&r, r0, r1, grow, orow, crow, ow);
                FN(bnpool22_apply8)(r.t0, r.t1, r.g, r.o, r.c, 0, mine, a, b, z, m, e0, e1, &bad);
            }
            /* a fixed trip count with a condition: masked vector stores */
            for (int i = 0; i < 16; ++i)
                if (i < 2 * ow) d0[i] = e0[i];
            for (int i = 0; i < 16; ++i)
                if (i < 2 * ow) d1[i] = e1[i];
            continue;
        }
        for (int64_t ox0 = 0; ox0 + 8 <= ow; ox0 += 8)
            FN(bnpool22_apply8)(r0, r1, grow, orow, crow, ox0, FN(lanes)(0, 8), a, b, z, m, d0, d1, &bad);
        if (ow % 8)
            FN(bnpool22_apply8)(r0, r1, grow, orow, crow, ow - 8, FN(lanes)(8 - ow % 8, 8), a, b, z, m, d0, d1,
                                &bad);
    }
    return FN(bad_count)(bad);
}
#endif

/* (a, b) += (sum(dy), sum(dy * (x - m))) over one plane's winners, dy the
 * pooled gradient where the output is > 0, else 0; returns how many codes
 * lie outside their window (skipped). */
static inline int64_t FN(bnpool_plane_sums)(const REAL *restrict gp, const REAL *restrict xp, const REAL *restrict op,
                                            const uint8_t *restrict cp, double m, const int64_t *restrict off,
                                            const fc_pool_geom *g, double *pa, double *pb) {
    const int64_t w = g->w, ow = g->ow, oh = g->oh, taps = g->kh * g->kw, sh = g->sh, sw = g->sw;
    int64_t bad = 0;
    double a = 0, b = 0;
    for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
            const int64_t j = oy * ow + ox;
            if (cp[j] >= taps) { ++bad; continue; }
            /* a winner the ReLU zeroed still adds 0 * (x - m): NaN for a NaN
             * winner, as the reference and the layers' backward give */
            const double gv = op[j] > 0 ? (double)gp[j] : 0.0;
            a += gv;
            b += gv * ((double)xp[oy * sh * w + ox * sw + off[cp[j]]] - m);
        }
    *pa += a;
    *pb += b;
    return bad;
}

/* The 2x2/2 vector path where it applies, else the scalar loops. */
static inline int FN(bnpool_vector_path)(const fc_pool_geom *g) {
#ifdef FC_BNPOOL_VECTOR
    return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2;
#else
    (void)g;
    return 0;
#endif
}

static inline int64_t FN(bnpool_sums_any)(const REAL *restrict gp, const REAL *restrict xp, const REAL *restrict op,
                                          const uint8_t *restrict cp, double m, const int64_t *restrict off,
                                          const fc_pool_geom *g, int64_t readable_x, int64_t readable_p,
                                          double *pa, double *pb) {
#ifdef FC_BNPOOL_VECTOR
    if (FN(bnpool_vector_path)(g)) return FN(bnpool22_plane_sums)(gp, xp, op, cp, m, g, readable_x, readable_p, pa, pb);
#else
    (void)readable_x;
    (void)readable_p;
#endif
    return FN(bnpool_plane_sums)(gp, xp, op, cp, m, off, g, pa, pb);
}

int FN(fc_bnpool_bwd_reduce)(const REAL *restrict d_out, const REAL *restrict x, const REAL *restrict mean,
                             const REAL *restrict out, const uint8_t *restrict code, REAL *restrict sum_dy,
                             REAL *restrict sum_dy_xmu, const fc_pool_geom *g) {
    const int status = fc_bnpool_check(g);
    if (status != FC_OK) return status;
    const int64_t n = g->n, c = g->c, hw = g->h * g->w, ohw = g->oh * g->ow;
    int64_t off[256]; /* plane offset of each window offset k (no divisions per winner) */
    fc_bnpool_offsets(g, off);
    const int64_t block = fc_bn_block(n), blocks = (n + block - 1) / block;
    double *part = malloc(sizeof(double) * 2 * c * blocks); /* per block: (a, b) per channel */
    if (part == NULL) return FC_ERR_NOMEM;
    int64_t bad = 0;
#pragma omp parallel for num_threads(fc_threads_for(n * c * ohw)) schedule(static) reduction(+ : bad)
    for (int64_t bl = 0; bl < blocks; ++bl) {
        double *pb = part + 2 * c * bl;
        const int64_t end = fc_bn_block_begin(pb, c, bl, block, n);
        for (int64_t img = bl * block; img < end; ++img)
            for (int64_t ch = 0; ch < c; ++ch) {
                const int64_t p = img * c + ch;
                double a = 0, b = 0;
                bad += FN(bnpool_sums_any)(d_out + p * ohw, x + p * hw, out + p * ohw, code + p * ohw, mean[ch],
                                           off, g, (n * c - p) * hw, (n * c - p) * ohw, &a, &b);
                pb[2 * ch] += a;
                pb[2 * ch + 1] += b;
            }
    }
    FN(store_block_totals)(part, blocks, c, sum_dy, sum_dy_xmu);
    free(part);
    return bad ? FC_ERR_INDEX : FC_OK;
}

/* d_x = dy * k_dy[c] + (x - mean[c]) * k_x[c] + k_0[c] with dy the pooled
 * gradient at the winners whose output is > 0 and 0 elsewhere (the
 * coefficients of backends/_bn_terms.py, backward_terms): each plane written
 * densely without dy, then its winners rewritten with it (the plane is in L1). */
/* One plane of the apply: the 2x2 vector path where it applies, else
 * dense without dy, then the winners rewritten with it (the plane is in L1).
 * Returns the bad codes (those winners keep the dense value). */
static inline int64_t FN(bnpool_plane_apply_any)(const REAL *restrict gp, const REAL *restrict xp,
                                                 const REAL *restrict op, const uint8_t *restrict cp, REAL a, REAL b,
                                                 REAL z, REAL m, const int64_t *restrict off, REAL *restrict dp,
                                                 const fc_pool_geom *g, int64_t readable_x, int64_t readable_p) {
#ifdef FC_BNPOOL_VECTOR
    if (FN(bnpool_vector_path)(g)) return FN(bnpool22_plane_apply)(gp, xp, op, cp, a, b, z, m, dp, g, readable_x, readable_p);
#else
    (void)readable_x;
    (void)readable_p;
#endif
    const int64_t w = g->w, hw = g->h * w, oh = g->oh, ow = g->ow, taps = g->kh * g->kw, sh = g->sh, sw = g->sw;
    int64_t bad = 0;
    for (int64_t k = 0; k < hw; ++k) dp[k] = (xp[k] - m) * b + z;
    for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
            const int64_t j = oy * ow + ox;
            if (cp[j] >= taps) { ++bad; continue; }
            if (!(op[j] > 0)) continue;
            const int64_t at = oy * sh * w + ox * sw + off[cp[j]];
            dp[at] = gp[j] * a + (xp[at] - m) * b + z;
        }
    return bad;
}

int FN(fc_bnpool_bwd_apply)(const REAL *restrict d_out, const REAL *restrict x, const REAL *restrict mean,
                            const REAL *restrict out, const uint8_t *restrict code, const REAL *restrict k_dy,
                            const REAL *restrict k_x, const REAL *restrict k_0, REAL *restrict d_x,
                            const fc_pool_geom *g) {
    const int status = fc_bnpool_check(g);
    if (status != FC_OK) return status;
    const int64_t c = g->c, hw = g->h * g->w, ohw = g->oh * g->ow;
    int64_t off[256];
    fc_bnpool_offsets(g, off);
    int64_t bad = 0;
#pragma omp parallel for num_threads(fc_threads_for(g->n * c * hw)) schedule(static) reduction(+ : bad)
    for (int64_t p = 0; p < g->n * c; ++p) {
        const int64_t ch = p % c;
        bad += FN(bnpool_plane_apply_any)(d_out + p * ohw, x + p * hw, out + p * ohw, code + p * ohw, k_dy[ch], k_x[ch],
                                          k_0[ch], mean[ch], off, d_x + p * hw, g, (g->n * c - p) * hw,
                                          (g->n * c - p) * ohw);
    }
    return bad ? FC_ERR_INDEX : FC_OK;
}

/* The training forward in one call: fc_bn_stats, the scale and shift
 * (fwd_terms), then fc_bnpool_fwd -- the same bits.  Where a channel's x
 * fits in L2 (FC_BN_FUSED_BYTES), one channel at a time, so the pool reads x
 * from cache, not memory (one of the stage's two passes over the tensor). */
int FN(fc_bnpool_fwd_fused)(const REAL *restrict x, const REAL *restrict gamma, const REAL *restrict beta,
                            REAL *restrict mean, REAL *restrict var, REAL *restrict out, uint8_t *restrict code,
                            double eps, const fc_pool_geom *g) {
    int status = fc_bnpool_check(g);
    if (status != FC_OK) return status;
    const int64_t n = g->n, c = g->c, hw = g->h * g->w, ohw = g->oh * g->ow;
    if (n * hw * (int64_t)sizeof(REAL) > FC_BN_FUSED_BYTES) {
        REAL *ab = FN(stats_and_terms)(x, gamma, beta, mean, var, n, c, hw, eps, &status);
        if (ab == NULL) return status;
        status = FN(fc_bnpool_fwd)(x, ab, ab + c, out, code, g);
        free(ab);
        return status;
    }
#pragma omp parallel for num_threads(fc_threads_for(n * c * hw)) schedule(static)
    for (int64_t ch = 0; ch < c; ++ch) {
        FN(channel_stats)(x, ch, n, c, hw, &mean[ch], &var[ch]);
        REAL scale, shift;
        FN(fwd_terms)(mean[ch], var[ch], gamma[ch], beta[ch], eps, &scale, &shift);
        for (int64_t img = 0; img < n; ++img) {
            const int64_t p = img * c + ch;
            FN(bnpool_plane)(x + p * hw, (n * c - p) * hw, scale, shift, out + p * ohw, code + p * ohw, g);
        }
    }
    return FC_OK;
}

/* The backward in one call: fc_bnpool_bwd_reduce, the coefficients
 * (bwd_terms, as backends/_bn_terms.py's backward_terms), then
 * fc_bnpool_bwd_apply -- the same bits; sum_dy and sum_dy_xmu returned as by
 * the reduce.  Where a channel's x fits in L2, one channel at a time, so the
 * apply reads x from cache, not memory. */
int FN(fc_bnpool_bwd_fused)(const REAL *restrict d_out, const REAL *restrict x, const REAL *restrict mean,
                            const REAL *restrict out, const uint8_t *restrict code, const REAL *restrict gamma,
                            const REAL *restrict inv_std, REAL *restrict sum_dy, REAL *restrict sum_dy_xmu,
                            REAL *restrict d_x, int64_t training, const fc_pool_geom *g) {
    int status = fc_bnpool_check(g);
    if (status != FC_OK) return status;
    const int64_t n = g->n, c = g->c, hw = g->h * g->w, ohw = g->oh * g->ow;
    const double count = (double)(n * hw);
    if (n * hw * (int64_t)sizeof(REAL) > FC_BN_FUSED_BYTES) {
        status = FN(fc_bnpool_bwd_reduce)(d_out, x, mean, out, code, sum_dy, sum_dy_xmu, g);
        REAL *k = status == FC_OK ? FN(all_bwd_terms)(gamma, inv_std, sum_dy, sum_dy_xmu, count, training, c) : NULL;
        if (k == NULL) return status != FC_OK ? status : FC_ERR_NOMEM;
        status = FN(fc_bnpool_bwd_apply)(d_out, x, mean, out, code, k, k + c, k + 2 * c, d_x, g);
        free(k);
        return status;
    }
    int64_t off[256];
    fc_bnpool_offsets(g, off);
    const int64_t block = fc_bn_block(n), blocks = (n + block - 1) / block;
    int64_t bad = 0;
#pragma omp parallel for num_threads(fc_threads_for(n * c * hw)) schedule(static) reduction(+ : bad)
    for (int64_t ch = 0; ch < c; ++ch) {
        /* the reduce kernel's sums: per image block in image order, blocks in order */
        double a = 0, b = 0;
        for (int64_t bl = 0; bl < blocks; ++bl) {
            const int64_t end = (bl + 1) * block < n ? (bl + 1) * block : n;
            double pa = 0, pb = 0;
            for (int64_t img = bl * block; img < end; ++img) {
                const int64_t p = img * c + ch;
                if (img + 1 < n) fc_prefetch(x + (p + c) * hw, hw * (int64_t)sizeof(REAL));
                bad += FN(bnpool_sums_any)(d_out + p * ohw, x + p * hw, out + p * ohw, code + p * ohw, mean[ch], off,
                                           g, (n * c - p) * hw, (n * c - p) * ohw, &pa, &pb);
            }
            a += pa;
            b += pb;
        }
        sum_dy[ch] = (REAL)a;
        sum_dy_xmu[ch] = (REAL)b;
        REAL k_dy, k_x, k_0;
        FN(bwd_terms)(gamma[ch], inv_std[ch], sum_dy[ch], sum_dy_xmu[ch], count, training, &k_dy, &k_x, &k_0);
        for (int64_t img = 0; img < n; ++img) {
            const int64_t p = img * c + ch;
            bad += FN(bnpool_plane_apply_any)(d_out + p * ohw, x + p * hw, out + p * ohw, code + p * ohw, k_dy, k_x,
                                              k_0, mean[ch], off, d_x + p * hw, g, (n * c - p) * hw,
                                              (n * c - p) * ohw);
        }
    }
    return bad ? FC_ERR_INDEX : FC_OK;
}
