/* Direct convolution, one group or depthwise: float and double (see conv_direct_tmpl.h). */
#include <string.h>

#include "common.h"

/* One group, or depthwise (a group per channel, one filter each). */
static int fc_direct_applies(const fc_conv_geom *g) {
    return g != NULL && (g->groups == 1 || (g->groups == g->c && g->f == g->c));
}

#define FC_TEMPLATE "conv_direct_tmpl.h"
#include "instantiate.h"
