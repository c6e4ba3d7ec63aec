/* Thread control for the OpenMP kernels.  A global (not omp_set_num_threads,
 * whose setting belongs to the calling thread) so the count set from Python
 * holds whichever Python thread later calls a kernel.
 *
 * fork(): GNU OpenMP's thread pool does not survive it.  A child forked after
 * the parent ran a region on several threads hangs in its first such region
 * (the pool's threads are gone; libgomp still waits for them).  So a child of
 * such a parent runs every region on its own thread, for good: regions with
 * num_threads(1) never touch the pool.  A child forked before any
 * multithreaded region keeps its threads. */
#include <pthread.h>

#include "common.h"
#ifdef _OPENMP
#include <omp.h>
#endif

int fc_nthreads = 1;
int fc_pool_started = 0;
static int fc_fork_clamped = 0;

void fc_set_num_threads(int n) { fc_nthreads = (n < 1 || fc_fork_clamped) ? 1 : n; }
int fc_get_num_threads(void) { return fc_nthreads; }
int fc_forked_single_threaded(void) { return fc_fork_clamped; }
int fc_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

static void fc_after_fork_in_child(void) {
    if (fc_pool_started) {
        fc_fork_clamped = 1;
        fc_nthreads = 1;
    }
}

__attribute__((constructor)) static void fc_register_fork_handler(void) {
    pthread_atfork(NULL, NULL, fc_after_fork_in_child);
}
