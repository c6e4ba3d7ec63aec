/* Max, average and adaptive-average pooling, float and double (pool_tmpl.h). */
#include <stdlib.h>
#include <string.h>
#include "common.h"

#define FC_TEMPLATE "pool_tmpl.h"
#include "instantiate.h"
