/* Few-tap convolution fused with max pooling, float and double (see
 * conv_maxpool_tmpl.h). */
#include <stdlib.h>
#include <string.h>
#include "common.h"

#define REAL float
#define FN(name) name##_f32
#include "conv_maxpool_tmpl.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_f64
#include "conv_maxpool_tmpl.h"
#undef REAL
#undef FN
