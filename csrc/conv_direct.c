/* Direct convolution, one group: float and double (see conv_direct_tmpl.h). */
#include <string.h>

#include "common.h"

static int fc_direct_applies(const fc_conv_geom *g) {
    return g != NULL && g->groups == 1;
}

#define FC_TEMPLATE "conv_direct_tmpl.h"
#include "instantiate.h"
