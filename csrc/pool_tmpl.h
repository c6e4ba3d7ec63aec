/* Pooling kernels for one element type (included by pool.c with REAL and
 * FN(name) defined).  Every kernel runs one (image, channel) plane per task,
 * so the scatters of the backward passes never share an address across
 * threads. */

static int FN(check_pool_sizes)(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh,
                                int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                int64_t oh, int64_t ow) {
    if (n < 1 || c < 1 || h < 1 || w < 1 || kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 ||
        pw < 0 || 2 * ph > kh || 2 * pw > kw || oh < 1 || ow < 1)
        return FC_ERR_SIZE;
    if (oh != (h + 2 * ph - kh) / sh + 1 || ow != (w + 2 * pw - kw) / sw + 1) return FC_ERR_SIZE;
    return FC_OK;
}

/* True when v beats the current best: larger, or the first NaN (NaN
 * propagates, as in PyTorch); ties keep the earlier element. */
static inline int FN(beats)(REAL v, REAL best) {
    return v > best || (v != v && best == best);
}

/* 2x2/2 max pool of outputs [lo, hi) of output row oy: the scan of the
 * generic path unrolled for the 2x2 window (this form the compiler
 * vectorises; see the tail handling in fc_maxpool_fwd). */
#define POOL_CHUNK 8
static inline void FN(pool22_span)(const REAL *restrict plane, int64_t w, int64_t oy,
                                   REAL *restrict o, int64_t *restrict ix, int64_t lo,
                                   int64_t hi) {
    const REAL *r0 = plane + 2 * oy * w, *r1 = r0 + w;
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
static inline void FN(pool22_short)(const REAL *restrict plane, int64_t w, int64_t oy,
                                    REAL *restrict o, int64_t *restrict ix, int64_t ow) {
    const REAL *r0 = plane + 2 * oy * w, *r1 = r0 + w;
    for (int64_t ox = 0; ox < ow; ++ox) {
        const REAL *p0 = r0 + 2 * ox, *p1 = r1 + 2 * ox;
        /* winners as offsets, values re-read by offset: only arithmetic */
        const int64_t tb = FN(beats_nb)(p0[1], p0[0]);
        const int64_t bd = FN(beats_nb)(p1[1], p1[0]);
        const int64_t down = FN(beats_nb)(p1[bd], p0[tb]);
        const int64_t off = tb + down * (w + bd - tb); /* from p0: tb, or w + bd */
        o[ox] = p0[off];
        ix[ox] = 2 * oy * w + 2 * ox + off;
    }
}

int FN(fc_maxpool_fwd)(const REAL *restrict x, REAL *restrict out, int64_t *restrict idx,
                       int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                       int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t oh, int64_t ow) {
    int status = FN(check_pool_sizes)(n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow);
    if (status != FC_OK) return status;
    const int fast22 = kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0;
#pragma omp parallel for num_threads(fc_nthreads) schedule(static)
    for (int64_t p = 0; p < n * c; ++p) {
        const REAL *plane = x + p * h * w;
        REAL *o = out + p * oh * ow;
        int64_t *ix = idx + p * oh * ow;
        if (fast22) {
            for (int64_t oy = 0; oy < oh; ++oy) {
                REAL *orow = o + oy * ow;
                int64_t *irow = ix + oy * ow;
                if (ow < POOL_CHUNK) {
                    FN(pool22_short)(plane, w, oy, orow, irow, ow);
                    continue;
                }
                const int64_t body = ow - ow % POOL_CHUNK;
                FN(pool22_span)(plane, w, oy, orow, irow, 0, body);
                /* The tail as one more full chunk overlapping the body:
                 * recomputing a few outputs is harmless and runs the vector
                 * code (a scalar tail mispredicts its branches on random data). */
                if (body < ow)
                    FN(pool22_span)(plane, w, oy, orow, irow, ow >= POOL_CHUNK ? ow - POOL_CHUNK : 0, ow);
            }
            continue;
        }
        for (int64_t oy = 0; oy < oh; ++oy) {
            const int64_t y0 = oy * sh - ph;
            const int64_t ya = y0 < 0 ? 0 : y0, yb = y0 + kh > h ? h : y0 + kh;
            for (int64_t ox = 0; ox < ow; ++ox) {
                const int64_t x0 = ox * sw - pw;
                const int64_t xa = x0 < 0 ? 0 : x0, xb = x0 + kw > w ? w : x0 + kw;
                /* padding is -inf, so the first in-bounds element starts the scan */
                int64_t at = ya * w + xa;
                REAL best = plane[at];
                for (int64_t iy = ya; iy < yb; ++iy) {
                    for (int64_t ix2 = xa; ix2 < xb; ++ix2) {
                        const REAL v = plane[iy * w + ix2];
                        if (FN(beats)(v, best)) { best = v; at = iy * w + ix2; }
                    }
                }
                o[oy * ow + ox] = best;
                ix[oy * ow + ox] = at;
            }
        }
    }
    return FC_OK;
}

/* Scatter (add or assign) each value to its plane position.  Bad indices
 * are counted and skipped; the caller turns a count into FC_ERR_INDEX. */
static int FN(scatter)(const REAL *restrict vals, const int64_t *restrict idx, REAL *restrict dst,
                       int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow,
                       int add) {
    if (n < 1 || c < 1 || h < 1 || w < 1 || oh < 1 || ow < 1) return FC_ERR_SIZE;
    const int64_t hw = h * w, ohw = oh * ow;
    int64_t bad = 0;
#pragma omp parallel for num_threads(fc_nthreads) schedule(static) reduction(+ : bad)
    for (int64_t p = 0; p < n * c; ++p) {
        REAL *plane = dst + p * hw;
        const REAL *v = vals + p * ohw;
        const int64_t *ix = idx + p * ohw;
        memset(plane, 0, sizeof(REAL) * hw);
        for (int64_t k = 0; k < ohw; ++k) {
            const int64_t at = ix[k];
            if (at < 0 || at >= hw) { ++bad; continue; }
            if (add) plane[at] += v[k];
            else plane[at] = v[k];
        }
    }
    return bad ? FC_ERR_INDEX : FC_OK;
}

int FN(fc_maxpool_bwd)(const REAL *restrict d_out, const int64_t *restrict idx, REAL *restrict d_x,
                       int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow) {
    return FN(scatter)(d_out, idx, d_x, n, c, h, w, oh, ow, 1);
}

int FN(fc_maxunpool)(const REAL *restrict x, const int64_t *restrict idx, REAL *restrict out,
                     int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow) {
    return FN(scatter)(x, idx, out, n, c, h, w, oh, ow, 0);
}

/* Average pooling walks the window offsets (i, j) and, for each, adds a
 * shifted (strided) copy of the input rows into the output rows: the inner
 * loop runs over ox without bounds tests, as in col2im (fc_window_ranges). */
int FN(fc_avgpool_fwd)(const REAL *restrict x, REAL *restrict out,
                       int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                       int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t oh, int64_t ow) {
    int status = FN(check_pool_sizes)(n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow);
    if (status != FC_OK) return status;
    int64_t *r = fc_window_ranges(h, w, kh, kw, sh, sw, ph, pw, 1, 1, oh, ow);
    if (r == NULL) return FC_ERR_NOMEM;
    const REAL scale = (REAL)(1.0 / (double)(kh * kw)); /* zero padding counts in the divisor */
#pragma omp parallel for num_threads(fc_nthreads) schedule(static)
    for (int64_t p = 0; p < n * c; ++p) {
        const REAL *plane = x + p * h * w;
        REAL *o = out + p * oh * ow;
        memset(o, 0, sizeof(REAL) * oh * ow);
        for (int64_t i = 0; i < kh; ++i) {
            for (int64_t j = 0; j < kw; ++j) {
                const int64_t xa = r[2 * (kh + j)], xb = r[2 * (kh + j) + 1];
                for (int64_t oy = r[2 * i]; oy < r[2 * i + 1]; ++oy) {
                    const REAL *src = plane + (oy * sh + i - ph) * w + j - pw;
                    REAL *dst = o + oy * ow;
                    for (int64_t ox = xa; ox < xb; ++ox) dst[ox] += src[ox * sw];
                }
            }
        }
        for (int64_t k = 0; k < oh * ow; ++k) o[k] *= scale;
    }
    free(r);
    return FC_OK;
}

int FN(fc_avgpool_bwd)(const REAL *restrict d_out, REAL *restrict d_x,
                       int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                       int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t oh, int64_t ow) {
    int status = FN(check_pool_sizes)(n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow);
    if (status != FC_OK) return status;
    int64_t *r = fc_window_ranges(h, w, kh, kw, sh, sw, ph, pw, 1, 1, oh, ow);
    if (r == NULL) return FC_ERR_NOMEM;
    const REAL scale = (REAL)(1.0 / (double)(kh * kw));
#pragma omp parallel for num_threads(fc_nthreads) schedule(static)
    for (int64_t p = 0; p < n * c; ++p) {
        REAL *plane = d_x + p * h * w;
        const REAL *g = d_out + p * oh * ow;
        memset(plane, 0, sizeof(REAL) * h * w);
        for (int64_t i = 0; i < kh; ++i) {
            for (int64_t j = 0; j < kw; ++j) {
                const int64_t xa = r[2 * (kh + j)], xb = r[2 * (kh + j) + 1];
                for (int64_t oy = r[2 * i]; oy < r[2 * i + 1]; ++oy) {
                    REAL *dst = plane + (oy * sh + i - ph) * w + j - pw;
                    const REAL *src = g + oy * ow;
                    for (int64_t ox = xa; ox < xb; ++ox) dst[ox * sw] += src[ox] * scale;
                }
            }
        }
    }
    free(r);
    return FC_OK;
}

/* PyTorch's adaptive bins: [floor(i*H/OH), ceil((i+1)*H/OH)). */
static inline int64_t FN(bin_start)(int64_t i, int64_t size, int64_t out) { return i * size / out; }
static inline int64_t FN(bin_end)(int64_t i, int64_t size, int64_t out) {
    return ((i + 1) * size + out - 1) / out;
}

int FN(fc_adaptive_avgpool_fwd)(const REAL *restrict x, REAL *restrict out,
                                int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow) {
    if (n < 1 || c < 1 || h < 1 || w < 1 || oh < 1 || ow < 1) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_nthreads) schedule(static)
    for (int64_t p = 0; p < n * c; ++p) {
        const REAL *plane = x + p * h * w;
        for (int64_t oy = 0; oy < oh; ++oy) {
            const int64_t ya = FN(bin_start)(oy, h, oh), yb = FN(bin_end)(oy, h, oh);
            for (int64_t ox = 0; ox < ow; ++ox) {
                const int64_t xa = FN(bin_start)(ox, w, ow), xb = FN(bin_end)(ox, w, ow);
                double acc = 0;
                if (xa == 0 && xb == w) {
                    /* full-width bins (global pooling): one contiguous block */
                    const REAL *blk = plane + ya * w;
#pragma omp simd reduction(+ : acc)
                    for (int64_t k = 0; k < (yb - ya) * w; ++k) acc += blk[k];
                } else {
                    for (int64_t iy = ya; iy < yb; ++iy) {
                        const REAL *row = plane + iy * w;
                        /* simd reduction: lets the compiler reassociate the sum */
#pragma omp simd reduction(+ : acc)
                        for (int64_t ix = xa; ix < xb; ++ix) acc += row[ix];
                    }
                }
                out[p * oh * ow + oy * ow + ox] = (REAL)(acc / (double)((yb - ya) * (xb - xa)));
            }
        }
    }
    return FC_OK;
}

int FN(fc_adaptive_avgpool_bwd)(const REAL *restrict d_out, REAL *restrict d_x,
                                int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow) {
    if (n < 1 || c < 1 || h < 1 || w < 1 || oh < 1 || ow < 1) return FC_ERR_SIZE;
#pragma omp parallel for num_threads(fc_nthreads) schedule(static)
    for (int64_t p = 0; p < n * c; ++p) {
        REAL *plane = d_x + p * h * w;
        memset(plane, 0, sizeof(REAL) * h * w);
        for (int64_t oy = 0; oy < oh; ++oy) {
            const int64_t ya = FN(bin_start)(oy, h, oh), yb = FN(bin_end)(oy, h, oh);
            for (int64_t ox = 0; ox < ow; ++ox) {
                const int64_t xa = FN(bin_start)(ox, w, ow), xb = FN(bin_end)(ox, w, ow);
                const REAL v = (REAL)(d_out[p * oh * ow + oy * ow + ox] /
                                      (double)((yb - ya) * (xb - xa)));
                for (int64_t iy = ya; iy < yb; ++iy)
                    for (int64_t ix = xa; ix < xb; ++ix) plane[iy * w + ix] += v;
            }
        }
    }
    return FC_OK;
}

#undef POOL_CHUNK
