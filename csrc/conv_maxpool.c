/* Few-tap convolution fused with max pooling, float and double (see
 * conv_maxpool_tmpl.h). */
#include <stdlib.h>
#include <string.h>
#include "common.h"

#define FC_TEMPLATE "conv_maxpool_tmpl.h"
#include "instantiate.h"
