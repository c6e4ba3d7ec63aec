/* BatchNorm statistics, affine and backward kernels, float and double. */
#include "common.h"

#define REAL float
#define FN(name) name##_f32
#include "batchnorm_tmpl.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_f64
#include "batchnorm_tmpl.h"
#undef REAL
#undef FN
