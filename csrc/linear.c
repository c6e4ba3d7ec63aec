/* Dense layers' products: float and double (see linear_tmpl.h). */
#include <string.h>

#include "common.h"

#define FC_TEMPLATE "linear_tmpl.h"
#include "instantiate.h"
