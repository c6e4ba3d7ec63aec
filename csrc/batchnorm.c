/* BatchNorm statistics, affine and backward kernels, float and double. */
#include "common.h"

#define FC_TEMPLATE "batchnorm_tmpl.h"
#include "instantiate.h"
