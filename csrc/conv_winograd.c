/* Winograd F(2x2, 3x3) convolution, float and double (see conv_winograd_tmpl.h). */
#include <limits.h>
#include <string.h>

#include "blas.h"
#include "common.h"

/* Bytes of one block's transformed input and products (16 x (C + F) per
 * tile): they stay in a 2 MB L2 between the transforms and the GEMMs. */
#define FC_WINO_BLOCK_BYTES (1024 * 1024)
/* Blocks wanted at least (when there are images enough): 4 per thread on
 * the 2-8 cores this library targets. */
#define FC_WINO_MIN_BLOCKS 16

/* 3x3, stride 1, no dilation, one group, padding at most 2 (the input
 * gradient runs with padding 2 - p), and a BLAS whose ints fit the GEMMs. */
static int fc_wino_check(const fc_conv_geom *g) {
    if (g == NULL || g->groups != 1 || g->kh != 3 || g->kw != 3 || g->sh != 1 || g->sw != 1 || g->dh != 1 ||
        g->dw != 1 || g->ph > 2 || g->pw > 2)
        return FC_ERR_SIZE;
    const int status = fc_check_conv_sizes(g->n, g->c, g->h, g->w, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw,
                                           g->dh, g->dw, g->oh, g->ow);
    if (status != FC_OK) return status;
    if (!fc_blas_ready()) return FC_ERR_NOBLAS;
    if (g->c > INT_MAX / 16 || g->f > INT_MAX / 16 || g->n * (g->oh + 1) / 2 * ((g->ow + 1) / 2) > INT_MAX)
        return FC_ERR_SIZE;
    return FC_OK;
}

#define FC_TEMPLATE "conv_winograd_tmpl.h"
#include "instantiate.h"
