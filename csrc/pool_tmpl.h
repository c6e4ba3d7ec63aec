/* Pooling kernels for one element type (included by pool.c with REAL and
 * FN(name) defined).  Every kernel runs one (image, channel) plane per task,
 * so the scatters of the backward passes never share an address across
 * threads. */

#include "maxpool_plane_tmpl.h"

/* A 2x2/2 plane (every window inside it) whose output rows are shorter than
 * a chunk (14x14 -> 7x7): each row as one chunk of pool22_span into buffers,
 * reading 16 values from each of its input rows -- past the row, inside the
 * array, which holds `readable` values from the plane's start -- of which the
 * row's outputs are kept; a row the array does not hold them for takes
 * pool22_short.  2.7x faster than pool22_short alone on (64, 32, 14, 14):
 * the chunk is vector code, the tournament scalar. */
static inline void FN(pool22_short_rows)(const REAL *restrict plane, int64_t readable, int64_t w, REAL *restrict o,
                                         int64_t *restrict ix, int64_t oh, int64_t ow) {
    for (int64_t oy = 0; oy < oh; ++oy) {
        if ((2 * oy + 1) * w + 2 * POOL_CHUNK > readable) {
            FN(pool22_short)(plane, w, w, oy, o + oy * ow, ix + oy * ow, ow);
            continue;
        }
        REAL ob[POOL_CHUNK];
        int64_t ib[POOL_CHUNK];
        FN(pool22_span)(plane, w, w, oy, ob, ib, 0, POOL_CHUNK);
        /* a fixed trip count with a condition: masked vector stores */
        for (int q = 0; q < POOL_CHUNK; ++q)
            if (q < ow) o[oy * ow + q] = ob[q];
        for (int q = 0; q < POOL_CHUNK; ++q)
            if (q < ow) ix[oy * ow + q] = ib[q];
    }
}

int FN(fc_maxpool_fwd)(const REAL *restrict x, REAL *restrict out, int64_t *restrict idx,
                       const fc_pool_geom *g) {
    int status = fc_check_pool_geom(g);
    if (status != FC_OK) return status;
    FC_POOL_LOCALS(g);
    const int short22 = kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && 2 * oh <= h &&
                        2 * ow <= w && ow < POOL_CHUNK;
#pragma omp parallel for num_threads(fc_threads_for(n * c * h * w)) schedule(static)
    for (int64_t p = 0; p < n * c; ++p) {
        if (short22)
            FN(pool22_short_rows)(x + p * h * w, (n * c - p) * h * w, w, out + p * oh * ow, idx + p * oh * ow, oh,
                                  ow);
        else
            FN(maxpool_plane)(x + p * h * w, w, h, w, out + p * oh * ow, idx + p * oh * ow, kh, kw, sh, sw, ph, pw,
                              oh, ow);
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
#pragma omp parallel for num_threads(fc_threads_for(n * c * h * w)) schedule(static) reduction(+ : bad)
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
int FN(fc_avgpool_fwd)(const REAL *restrict x, REAL *restrict out, const fc_pool_geom *g) {
    int status = fc_check_pool_geom(g);
    if (status != FC_OK) return status;
    if (g->ceil_mode) return FC_ERR_SIZE; /* every window divides by kh*kw: floor mode only */
    FC_POOL_LOCALS(g);
    int64_t *r = fc_window_ranges(h, w, kh, kw, sh, sw, ph, pw, 1, 1, oh, ow);
    if (r == NULL) return FC_ERR_NOMEM;
    const REAL scale = (REAL)(1.0 / (double)(kh * kw)); /* zero padding counts in the divisor */
#pragma omp parallel for num_threads(fc_threads_for(n * c * h * w)) schedule(static)
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

int FN(fc_avgpool_bwd)(const REAL *restrict d_out, REAL *restrict d_x, const fc_pool_geom *g) {
    int status = fc_check_pool_geom(g);
    if (status != FC_OK) return status;
    if (g->ceil_mode) return FC_ERR_SIZE; /* every window divides by kh*kw: floor mode only */
    FC_POOL_LOCALS(g);
    int64_t *r = fc_window_ranges(h, w, kh, kw, sh, sw, ph, pw, 1, 1, oh, ow);
    if (r == NULL) return FC_ERR_NOMEM;
    const REAL scale = (REAL)(1.0 / (double)(kh * kw));
#pragma omp parallel for num_threads(fc_threads_for(n * c * h * w)) schedule(static)
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
#pragma omp parallel for num_threads(fc_threads_for(n * c * h * w)) schedule(static)
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
#pragma omp parallel for num_threads(fc_threads_for(n * c * h * w)) schedule(static)
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

