/* ReLU, its gradient and a sum, float and double (see elementwise_tmpl.h). */
#include <string.h>
#include "common.h"

#define FC_TEMPLATE "elementwise_tmpl.h"
#include "instantiate.h"
