/* Optimizer updates, float and double (see optim_tmpl.h). */
#include "common.h"

#define FC_TEMPLATE "optim_tmpl.h"
#include "instantiate.h"
