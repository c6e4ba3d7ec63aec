/* Helpers shared by the kernel files (not part of the cffi interface). */
#ifndef FASTCONV_COMMON_H
#define FASTCONV_COMMON_H
#include <stdint.h>
#include <stdlib.h>
#include "fastconv.h"

/* Thread count used by every `omp parallel` region (set from Python), and
 * whether a region has run on more than one thread (see threads.c: fork). */
extern int fc_nthreads;
extern int fc_pool_started;

/* Threads for a parallel region over `work` elements (or multiply-adds):
 * one below a grain of 32768 (PyTorch's at::internal::GRAIN_SIZE), where
 * waking the sleeping second thread (~0.1 ms on a VM, OMP_WAIT_POLICY is
 * PASSIVE) costs more than the whole loop.  Results do not depend on it:
 * every kernel gives the same bits at any thread count. */
#define FC_GRAIN 32768
static inline int fc_threads_for(int64_t work) {
    if (work < FC_GRAIN || fc_nthreads == 1) return 1;
    fc_pool_started = 1;
    return fc_nthreads;
}

/* Integer division rounding toward -inf / +inf, for b > 0 and any sign of a. */
static inline int64_t fc_floor_div(int64_t a, int64_t b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}
static inline int64_t fc_ceil_div(int64_t a, int64_t b) {
    return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}
static inline int64_t fc_clamp(int64_t v, int64_t lo, int64_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Output positions o in [*lo, *hi) whose input coordinate o*s + k*d - p lies
 * in [0, size): lets the inner loops run without a bounds test per element. */
static inline void fc_valid_range(int64_t size, int64_t out, int64_t s, int64_t k,
                                  int64_t d, int64_t p, int64_t *lo, int64_t *hi) {
    int64_t off = k * d - p;
    *lo = fc_clamp(fc_ceil_div(-off, s), 0, out);
    *hi = fc_clamp(fc_floor_div(size - 1 - off, s) + 1, *lo, out);
}

/* FC_OK when the convolution geometry is well formed and (oh, ow) is the
 * output size it implies; shared by the im2col and direct-convolution kernels. */
static inline int fc_check_conv_sizes(int64_t n, int64_t c, int64_t h, int64_t w, int64_t fh,
                                      int64_t fw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                      int64_t dh, int64_t dw, int64_t oh, int64_t ow) {
    if (n < 1 || c < 1 || h < 1 || w < 1 || fh < 1 || fw < 1 || sh < 1 || sw < 1 ||
        ph < 0 || pw < 0 || dh < 1 || dw < 1 || oh < 1 || ow < 1)
        return FC_ERR_SIZE;
    if (oh != (h + 2 * ph - dh * (fh - 1) - 1) / sh + 1 ||
        ow != (w + 2 * pw - dw * (fw - 1) - 1) / sw + 1)
        return FC_ERR_SIZE;
    return FC_OK;
}

/* Bytes of the target's widest vector register: the width of the kernels'
 * GCC vector types.  A wider type is lowered piecewise through memory (the
 * direct convolution ran 3-10x slower with 64-byte vectors on an AVX2 build). */
#if defined(__AVX512F__)
#define FC_VBYTES 64
#elif defined(__AVX__)
#define FC_VBYTES 32
#else
#define FC_VBYTES 16
#endif

/* Convolution weight gradients sum at most this many fixed blocks of images
 * (chosen from N alone, added in block order: the same bits at any thread
 * count); conv_gemm.c and conv_direct.c share it. */
#define FC_GRAD_BLOCKS 8

/* A geometry record's fields as local constants under the names the kernel
 * bodies use: a convolution's kernel is fh x fw, a pool's window kh x kw. */
#define FC_CONV_LOCALS(g)                                                                            \
    __attribute__((unused)) const int64_t n = (g)->n, c = (g)->c, h = (g)->h, w = (g)->w, f = (g)->f, \
                                          fh = (g)->kh, fw = (g)->kw, sh = (g)->sh, sw = (g)->sw,    \
                                          ph = (g)->ph, pw = (g)->pw, dh = (g)->dh, dw = (g)->dw,    \
                                          oh = (g)->oh, ow = (g)->ow
#define FC_POOL_LOCALS(g)                                                                            \
    __attribute__((unused)) const int64_t n = (g)->n, c = (g)->c, h = (g)->h, w = (g)->w,             \
                                          kh = (g)->kh, kw = (g)->kw, sh = (g)->sh, sw = (g)->sw,    \
                                          ph = (g)->ph, pw = (g)->pw, oh = (g)->oh, ow = (g)->ow

/* Outputs of a pooling window along one axis (fastconv._geometry.pool_output_size):
 * rounded up in ceil mode, but the last window starts inside the input or its
 * left padding.  Needs size + 2p >= k. */
static inline int64_t fc_pool_out(int64_t size, int64_t k, int64_t s, int64_t p, int64_t ceil_mode) {
    int64_t out = (size + 2 * p - k + (ceil_mode ? s - 1 : 0)) / s + 1;
    if (ceil_mode && (out - 1) * s >= size + p) --out;
    return out;
}

/* FC_OK when a pooling geometry is well formed (no window holds only
 * padding) and (oh, ow) is the output size it implies. */
static inline int fc_check_pool_geom(const fc_pool_geom *g) {
    if (g == NULL || g->n < 1 || g->c < 1 || g->h < 1 || g->w < 1 || g->kh < 1 || g->kw < 1 ||
        g->sh < 1 || g->sw < 1 || g->ph < 0 || g->pw < 0 || 2 * g->ph > g->kh || 2 * g->pw > g->kw ||
        g->h + 2 * g->ph < g->kh || g->w + 2 * g->pw < g->kw || (g->ceil_mode != 0 && g->ceil_mode != 1) ||
        g->oh < 1 || g->ow < 1)
        return FC_ERR_SIZE;
    if (g->oh != fc_pool_out(g->h, g->kh, g->sh, g->ph, g->ceil_mode) ||
        g->ow != fc_pool_out(g->w, g->kw, g->sw, g->pw, g->ceil_mode))
        return FC_ERR_SIZE;
    return FC_OK;
}

/* Valid output ranges of every kernel offset, computed once per call (the
 * same for im2col/col2im and for the pooling kernels, which pass d = 1):
 * ranges[2i], ranges[2i+1] = (lo, hi) of oy for kernel row i, and
 * ranges[2(kh+j)], ranges[2(kh+j)+1] = (lo, hi) of ox for kernel column j.
 * The caller frees it; NULL when out of memory. */
static inline int64_t *fc_window_ranges(int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                                        int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                                        int64_t oh, int64_t ow) {
    int64_t *r = malloc(sizeof(int64_t) * 2 * (kh + kw));
    if (r == NULL) return NULL;
    for (int64_t i = 0; i < kh; ++i) fc_valid_range(h, oh, sh, i, dh, ph, &r[2 * i], &r[2 * i + 1]);
    for (int64_t j = 0; j < kw; ++j)
        fc_valid_range(w, ow, sw, j, dw, pw, &r[2 * (kh + j)], &r[2 * (kh + j) + 1]);
    return r;
}

/* malloc for scratch read as 64-byte vector blocks: starts on a cache line
 * (rows of whole blocks then never straddle two lines); free() releases it. */
static inline void *fc_alloc_lines(size_t bytes) {
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

/* Row primitives: d[k] = s[k] / d[k] += s[k] for k < n, left to the
 * compiler's vectoriser.  (AVX-512 masked tails were tried: masked stores
 * made col2im 2x slower on this machine's AMD cores.) */
#define FC_ROW_OPS(REAL, SFX)                                                              \
    static inline void fc_row_copy_##SFX(REAL *restrict d, const REAL *restrict s, int64_t n) { \
        for (int64_t k = 0; k < n; ++k) d[k] = s[k];                                       \
    }                                                                                      \
    static inline void fc_row_add_##SFX(REAL *restrict d, const REAL *restrict s, int64_t n) {  \
        for (int64_t k = 0; k < n; ++k) d[k] += s[k];                                      \
    }
FC_ROW_OPS(float, f32)
FC_ROW_OPS(double, f64)
#undef FC_ROW_OPS

#endif
