/* Thread control for the OpenMP kernels.  A global (not omp_set_num_threads,
 * whose setting belongs to the calling thread) so the count set from Python
 * holds whichever Python thread later calls a kernel. */
#include "common.h"
#ifdef _OPENMP
#include <omp.h>
#endif

int fc_nthreads = 1;

void fc_set_num_threads(int n) { fc_nthreads = n < 1 ? 1 : n; }
int fc_get_num_threads(void) { return fc_nthreads; }
int fc_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
