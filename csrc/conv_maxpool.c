/* Convolution fused with max pooling, float and double: the few-tap direct
 * kernels and, for many taps, the winner-sparse gradients and im2row / row
 * pool (see conv_maxpool_tmpl.h and the templates it includes). */
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h> /* the gather in conv_pool_grad_tmpl.h */
#endif
#include "common.h"

#define FC_TEMPLATE "conv_maxpool_tmpl.h"
#include "instantiate.h"

/* Whether the conv + max pool kernels take this geometry with their phase
 * kernels (conv_pool22_tmpl.h), so the forward should run them rather than
 * im2row + GEMM (fastconv/functional/conv.py asks). */
int fc_conv_maxpool_phase_ok(const fc_conv_geom *cg, const fc_pool_geom *pg) {
    return conv_pool_geom_ok_f32(cg, pg) && p22_applies_f32(cg, pg);
}
