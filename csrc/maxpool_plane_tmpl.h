/* Max pooling of one (H, W) plane, for one element type: shared by the
 * pooling kernels (pool_tmpl.h) and the fused convolution + max pool
 * (conv_maxpool_tmpl.h).  Included with REAL and FN(name) defined.
 *
 * `ld` is the distance between the plane's rows in memory and `w` its width:
 * equal for a plain NCHW plane, ld > w for a scratch plane with padded rows.
 * Indices are always h*W + w, as if the plane were dense. */
#ifndef POOL_CHUNK
#define POOL_CHUNK 8
#endif

/* True when v beats the current best: larger, or the first NaN (NaN
 * propagates; the first NaN in window order wins, a policy of fastconv --
 * PyTorch keeps the last); ties keep the earlier element. */
static inline int FN(beats)(REAL v, REAL best) {
    return v > best || (v != v && best == best);
}

/* 2x2/2 max pool of outputs [lo, hi) of output row oy: the scan of the
 * generic path unrolled for the 2x2 window (this form the compiler
 * vectorises; see the tail handling in maxpool_plane). */
static inline void FN(pool22_span)(const REAL *restrict plane, int64_t ld, int64_t w, int64_t oy,
                                   REAL *restrict o, int64_t *restrict ix, int64_t lo,
                                   int64_t hi) {
    const REAL *r0 = plane + 2 * oy * ld, *r1 = r0 + ld;
    for (int64_t ox = lo; ox < hi; ++ox) {
        const int64_t x0 = 2 * ox;
        REAL best = r0[x0];
        int64_t at = 2 * oy * w + x0;
        if (FN(beats)(r0[x0 + 1], best)) { best = r0[x0 + 1]; at = 2 * oy * w + x0 + 1; }
        if (FN(beats)(r1[x0], best)) { best = r1[x0]; at = (2 * oy + 1) * w + x0; }
        if (FN(beats)(r1[x0 + 1], best)) { best = r1[x0 + 1]; at = (2 * oy + 1) * w + x0 + 1; }
        o[ox] = best;
        ix[ox] = at;
    }
}

/* The same 2x2/2 pool for rows shorter than one chunk (OW < POOL_CHUNK, e.g.
 * 11x11 -> 5x5): a pairwise tournament in pure arithmetic (bitwise tests,
 * winners as offsets), so no branch mispredicts on random data.  Same winner as the row-major scan (ties and later NaNs never
 * displace an earlier element). */
static inline int FN(beats_nb)(REAL v, REAL best) {
    return (v > best) | ((v != v) & (best == best));
}
static inline void FN(pool22_short)(const REAL *restrict plane, int64_t ld, int64_t w, int64_t oy,
                                    REAL *restrict o, int64_t *restrict ix, int64_t ow) {
    const REAL *r0 = plane + 2 * oy * ld, *r1 = r0 + ld;
    for (int64_t ox = 0; ox < ow; ++ox) {
        const REAL *p0 = r0 + 2 * ox, *p1 = r1 + 2 * ox;
        /* winners as offsets, values re-read by offset: only arithmetic */
        const int64_t tb = FN(beats_nb)(p0[1], p0[0]);
        const int64_t bd = FN(beats_nb)(p1[1], p1[0]);
        const int64_t down = FN(beats_nb)(p1[bd], p0[tb]);
        const int64_t off = tb + down * (ld + bd - tb); /* from p0: tb, or ld + bd */
        o[ox] = p0[off];
        ix[ox] = 2 * oy * w + 2 * ox + tb + down * (w + bd - tb);
    }
}

/* The max over the window of output (oy, ox), clipped to the plane: padding
 * (and, in ceil mode, whatever lies past it) is -inf and never wins. */
static inline void FN(window_max)(const REAL *restrict plane, int64_t ld, int64_t h, int64_t w,
                                  int64_t oy, int64_t ox, REAL *restrict o, int64_t *restrict ix,
                                  int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    const int64_t y0 = oy * sh - ph, x0 = ox * sw - pw;
    const int64_t ya = y0 < 0 ? 0 : y0, yb = y0 + kh > h ? h : y0 + kh;
    const int64_t xa = x0 < 0 ? 0 : x0, xb = x0 + kw > w ? w : x0 + kw;
    /* the first in-bounds element starts the scan */
    int64_t at = ya * w + xa;
    REAL best = plane[ya * ld + xa];
    for (int64_t iy = ya; iy < yb; ++iy) {
        for (int64_t ix2 = xa; ix2 < xb; ++ix2) {
            const REAL v = plane[iy * ld + ix2];
            if (FN(beats)(v, best)) { best = v; at = iy * w + ix2; }
        }
    }
    *o = best;
    *ix = at;
}

/* Pool one (g->h, g->w) plane into o / ix (each OH x OW, dense). */
static inline void FN(maxpool_plane)(const REAL *restrict plane, int64_t ld, REAL *restrict o,
                                     int64_t *restrict ix, const fc_pool_geom *g) {
    FC_POOL_LOCALS(g);
    /* The 2x2/2 windows that lie inside the plane take the unrolled paths;
     * the rest -- every window of other geometries, and in ceil mode the last
     * row and column, which overhang -- the clipped scan. */
    int64_t fit_h = 0, fit_w = 0;
    if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0) {
        fit_h = h / 2 < oh ? h / 2 : oh;
        fit_w = w / 2 < ow ? w / 2 : ow;
        for (int64_t oy = 0; oy < fit_h; ++oy) {
            REAL *orow = o + oy * ow;
            int64_t *irow = ix + oy * ow;
            if (fit_w < POOL_CHUNK) {
                FN(pool22_short)(plane, ld, w, oy, orow, irow, fit_w);
                continue;
            }
            const int64_t body = fit_w - fit_w % POOL_CHUNK;
            FN(pool22_span)(plane, ld, w, oy, orow, irow, 0, body);
            /* The tail as one more full chunk overlapping the body:
             * recomputing a few outputs is harmless and runs the vector
             * code (a scalar tail mispredicts its branches on random data). */
            if (body < fit_w) FN(pool22_span)(plane, ld, w, oy, orow, irow, fit_w - POOL_CHUNK, fit_w);
        }
        if (fit_h == oh && fit_w == ow) return; /* floor mode: every window was inside */
    }
    for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = oy < fit_h ? fit_w : 0; ox < ow; ++ox)
            FN(window_max)(plane, ld, h, w, oy, ox, o + oy * ow + ox, ix + oy * ow + ox, kh, kw, sh, sw, ph, pw);
}
