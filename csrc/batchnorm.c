/* BatchNorm statistics, affine and backward kernels, float and double, and
 * BatchNorm + ReLU + max pool as one stage (bn_pool_tmpl.h). */
#include <math.h>
#include <string.h>

#include "common.h"

/* Images per block of the BatchNorm reductions: a function of N alone (never
 * of the thread count, so sums are added in the same order on any machine),
 * at least 4 and at most 256 blocks (bounded scratch for any batch). */
static int64_t fc_bn_block(int64_t n) {
    const int64_t per_256 = (n + 255) / 256;
    return per_256 > 4 ? per_256 : 4;
}

/* Block b's images are [b * block, the returned end); its partial sums pb
 * (two per channel) are zeroed. */
static int64_t fc_bn_block_begin(double *pb, int64_t c, int64_t b, int64_t block, int64_t n) {
    for (int64_t k = 0; k < 2 * c; ++k) pb[k] = 0;
    return (b + 1) * block < n ? (b + 1) * block : n;
}

/* Channel ch's two sums over all blocks, added in block order. */
static void fc_bn_block_total(const double *part, int64_t blocks, int64_t c, int64_t ch, double *s1,
                              double *s2) {
    *s1 = *s2 = 0;
    for (int64_t b = 0; b < blocks; ++b) {
        *s1 += part[2 * (c * b + ch)];
        *s2 += part[2 * (c * b + ch) + 1];
    }
}

/* Asks for the next plane of a channel (C planes further on) while this one
 * is read: the hardware prefetcher starts over at each plane, and planes of
 * a few KB end before it has caught up. */
static inline void fc_prefetch(const void *p, int64_t bytes) {
    for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch((const char *)p + off, 0, 3);
}

/* The pooling geometries fc_bnpool_* take: windows that do not overlap, no
 * padding, floor mode, at most 256 taps (the winner's offset is a byte). */
static int fc_bnpool_check(const fc_pool_geom *g) {
    const int status = fc_check_pool_geom(g);
    if (status != FC_OK) return status;
    if (g->ph != 0 || g->pw != 0 || g->ceil_mode != 0 || g->sh < g->kh || g->sw < g->kw || g->kh * g->kw > 256)
        return FC_ERR_SIZE;
    return FC_OK;
}

/* off[k] = i * w + j for each window offset k = i * kw + j (a checked geometry). */
static void fc_bnpool_offsets(const fc_pool_geom *g, int64_t off[256]) {
    for (int64_t k = 0; k < g->kh * g->kw; ++k) off[k] = (k / g->kw) * g->w + k % g->kw;
}

#define FC_TEMPLATE "batchnorm_tmpl.h"
#include "instantiate.h"
#define FC_TEMPLATE "bn_pool_tmpl.h"
#include "instantiate.h"
