/* Direct convolution, stride 1, one group: float and double (see conv_direct_tmpl.h). */
#include <string.h>

#include "common.h"

static int fc_direct_applies(const fc_conv_geom *g) {
    return g != NULL && g->sh == 1 && g->sw == 1 && g->groups == 1;
}

#define FC_TEMPLATE "conv_direct_tmpl.h"
#include "instantiate.h"
