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
