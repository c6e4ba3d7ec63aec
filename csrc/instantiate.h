/* Compiles the kernel template named by FC_TEMPLATE once per element type:
 * REAL float with FN(name) -> name_f32, then REAL double with name_f64.
 * Usage in a .c file:  #define FC_TEMPLATE "pool_tmpl.h"  #include "instantiate.h"
 * (im2col.c instantiates by hand: only its float build has an AVX-512 path). */
#ifndef FC_TEMPLATE
#error "define FC_TEMPLATE before including instantiate.h"
#endif

#define REAL float
#define FC_REAL_IS_FLOAT 1
#define FN(name) name##_f32
#include FC_TEMPLATE
#undef REAL
#undef FC_REAL_IS_FLOAT
#undef FN

#define REAL double
#define FC_REAL_IS_FLOAT 0
#define FN(name) name##_f64
#include FC_TEMPLATE
#undef REAL
#undef FC_REAL_IS_FLOAT
#undef FN

#undef FC_TEMPLATE
