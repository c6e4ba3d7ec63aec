/* Max, average and adaptive-average pooling, float and double (pool_tmpl.h). */
#include <stdlib.h>
#include <string.h>
#include "common.h"

#define REAL float
#define FN(name) name##_f32
#include "pool_tmpl.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_f64
#include "pool_tmpl.h"
#undef REAL
#undef FN
