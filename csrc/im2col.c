/* im2col / col2im kernels, float and double (see im2col_tmpl.h). */
#include "common.h"

#define REAL float
#define FN(name) name##_f32
#include "im2col_tmpl.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_f64
#include "im2col_tmpl.h"
#undef REAL
#undef FN
