/* im2col / col2im kernels, float and double (see im2col_tmpl.h). */
#include "common.h"
#include "col2im_avx512.h"

#define REAL float
#define FN(name) name##_f32
#ifdef FC_HAVE_COL2IM_PLANE_F32
#define COL2IM_PLANE_FAST fc_col2im_plane_avx512_f32
#endif
#include "im2col_tmpl.h"
#undef REAL
#undef FN
#undef COL2IM_PLANE_FAST

#define REAL double
#define FN(name) name##_f64
#include "im2col_tmpl.h"
#undef REAL
#undef FN
