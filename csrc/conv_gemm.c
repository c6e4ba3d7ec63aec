/* Implicit-GEMM convolution, float and double (see conv_gemm_tmpl.h). */
#include <limits.h>

#include "blas.h"
#include "common.h"

/* Bytes of one column tile: with the GEMM's packed panels it stays in a
 * 512 KB-1 MB L2.  Measured on the CIFAR shapes (bench/conv_paths.py). */
#define FC_COL_TILE_BYTES (256 * 1024)
/* Weight-gradient blocks: at most FC_GRAD_BLOCKS (common.h), and their
 * partial sums at most FC_GRAD_PARTS_BYTES together. */
#define FC_GRAD_PARTS_BYTES ((int64_t)64 << 20)

static int fc_check_conv_geom(const fc_conv_geom *g) {
    if (g == NULL || g->groups < 1 || g->c % g->groups || g->f < 1 || g->f % g->groups) return FC_ERR_SIZE;
    int status = fc_check_conv_sizes(g->n, g->c, g->h, g->w, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw,
                                     g->dh, g->dw, g->oh, g->ow);
    if (status != FC_OK) return status;
    if (!fc_blas_ready()) return FC_ERR_NOBLAS;
    /* every GEMM size and leading dimension must fit a 32-bit BLAS's int */
    const int64_t kg = g->c / g->groups * g->kh * g->kw;
    if (kg > INT_MAX || g->oh * g->ow > INT_MAX || g->h * g->w > INT_MAX || g->f > INT_MAX) return FC_ERR_SIZE;
    return FC_OK;
}

static int64_t fc_conv_is_pointwise(const fc_conv_geom *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

/* Output positions per tile: the tile's columns fill FC_COL_TILE_BYTES,
 * whole vectors of positions, and the tiles of an image are equal. */
static int64_t fc_conv_tile_cols(int64_t kg, int64_t positions, int64_t item) {
    int64_t pt = FC_COL_TILE_BYTES / (kg * item);
    pt = pt < 64 ? 64 : pt / 16 * 16;
    if (pt >= positions) return positions;
    const int64_t tiles = (positions + pt - 1) / pt;
    pt = ((positions + tiles - 1) / tiles + 15) / 16 * 16;
    return pt < positions ? pt : positions;
}

static int64_t fc_conv_grad_blocks(int64_t n, int64_t weight_bytes) {
    int64_t blocks = n < FC_GRAD_BLOCKS ? n : FC_GRAD_BLOCKS;
    while (blocks > 1 && (blocks - 1) * weight_bytes > FC_GRAD_PARTS_BYTES) --blocks;
    return blocks;
}

#define FC_TEMPLATE "conv_gemm_tmpl.h"
#include "instantiate.h"
