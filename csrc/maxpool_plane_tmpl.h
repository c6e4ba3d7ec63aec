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

/* Pool one (h, w) plane into o / ix (each OH x OW, dense). */
static inline void FN(maxpool_plane)(const REAL *restrict plane, int64_t ld, int64_t h, int64_t w,
                                     REAL *restrict o, int64_t *restrict ix, int64_t kh, int64_t kw,
                                     int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t oh,
                                     int64_t ow) {
    /* 2x2/2 with every window inside the plane (always in floor mode; in ceil
     * mode the last row and column of an odd plane overhang and take the
     * clipped scan below with the rest) */
    if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && 2 * oh <= h && 2 * ow <= w) {
        for (int64_t oy = 0; oy < oh; ++oy) {
            REAL *orow = o + oy * ow;
            int64_t *irow = ix + oy * ow;
            if (ow < POOL_CHUNK) {
                FN(pool22_short)(plane, ld, w, oy, orow, irow, ow);
                continue;
            }
            const int64_t body = ow - ow % POOL_CHUNK;
            FN(pool22_span)(plane, ld, w, oy, orow, irow, 0, body);
            /* The tail as one more full chunk overlapping the body:
             * recomputing a few outputs is harmless and runs the vector
             * code (a scalar tail mispredicts its branches on random data). */
            if (body < ow) FN(pool22_span)(plane, ld, w, oy, orow, irow, ow - POOL_CHUNK, ow);
        }
        return;
    }
    for (int64_t oy = 0; oy < oh; ++oy) {
        const int64_t y0 = oy * sh - ph;
        const int64_t ya = y0 < 0 ? 0 : y0, yb = y0 + kh > h ? h : y0 + kh;
        for (int64_t ox = 0; ox < ow; ++ox) {
            const int64_t x0 = ox * sw - pw;
            const int64_t xa = x0 < 0 ? 0 : x0, xb = x0 + kw > w ? w : x0 + kw;
            /* padding (and in ceil mode what lies past it) is -inf, so the
             * first in-bounds element starts the scan */
            int64_t at = ya * w + xa;
            REAL best = plane[ya * ld + xa];
            for (int64_t iy = ya; iy < yb; ++iy) {
                for (int64_t ix2 = xa; ix2 < xb; ++ix2) {
                    const REAL v = plane[iy * ld + ix2];
                    if (FN(beats)(v, best)) { best = v; at = iy * w + ix2; }
                }
            }
            o[oy * ow + ox] = best;
            ix[oy * ow + ox] = at;
        }
    }
}
