/* A cache of large freed NumPy array buffers (installed by
 * fastconv/_array_cache.py as NumPy's data-memory handler, NEP 49).
 *
 * Why: glibc serves every block of 32 MB or more (its mmap threshold cannot
 * be raised further on 64-bit) with fresh mmap'ed pages and unmaps it on
 * free, so a training step whose activations are that large (batch 256 on
 * 32x32 maps) has the kernel zero and fault in the same pages again on every
 * step: a max-pool backward on a (256, 48, 32, 32) input took 9.4 ms with a
 * fresh result and 3.0 ms into reused memory.  A training step allocates the
 * same sizes every step, so freed blocks of at least `min_bytes` are kept
 * (up to `limit_bytes` in all, the least recently freed go first) and handed
 * out again to the next request of exactly the same size.
 *
 * Every block is a plain malloc block: realloc goes to the C library, and a
 * block is only kept when malloc_usable_size confirms it holds the size NumPy
 * says it freed.  One mutex guards the table; fork holds it across the fork
 * so the child starts with it released and a consistent table.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fastconv.h"

#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#define USABLE_SIZE(p) malloc_usable_size(p)
#else
#define USABLE_SIZE(p) ((size_t)0) /* unknown: no block is ever kept */
#endif

/* NumPy's PyDataMem_Handler, version 1 (numpy/ndarraytypes.h; NumPy keeps
 * this layout fixed: later versions may only add fields at the end). */
typedef struct {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr, size_t size);
} np_allocator;

typedef struct {
    char name[127];
    uint8_t version;
    np_allocator allocator;
} np_handler;

#define CACHE_SLOTS 64

typedef struct {
    void *ptr;     /* NULL: an empty slot */
    size_t size;   /* the size NumPy asked for (and freed it with) */
    uint64_t when; /* when it was freed: the oldest goes first */
} cache_slot;

static cache_slot slots[CACHE_SLOTS];
static size_t cached_bytes, limit_bytes, min_bytes = SIZE_MAX; /* SIZE_MAX: not configured, keeps nothing */
static uint64_t clock_ticks, hits, misses;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void lock_for_fork(void) { pthread_mutex_lock(&lock); }
static void unlock_after_fork(void) { pthread_mutex_unlock(&lock); }

/* A cached block of exactly `size` bytes (taken out of the table), or NULL. */
static void *take(size_t size) {
    if (size < min_bytes) return NULL;
    void *found = NULL;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < CACHE_SLOTS; ++i)
        if (slots[i].ptr != NULL && slots[i].size == size) {
            found = slots[i].ptr;
            slots[i].ptr = NULL;
            cached_bytes -= size;
            break;
        }
    if (found != NULL) ++hits;
    else ++misses;
    pthread_mutex_unlock(&lock);
    return found;
}

/* The oldest cached block, taken out of the table (lock held), or NULL. */
static void *take_oldest(size_t *size) {
    int oldest = -1;
    for (int i = 0; i < CACHE_SLOTS; ++i)
        if (slots[i].ptr != NULL && (oldest < 0 || slots[i].when < slots[oldest].when)) oldest = i;
    if (oldest < 0) return NULL;
    void *ptr = slots[oldest].ptr;
    *size = slots[oldest].size;
    slots[oldest].ptr = NULL;
    cached_bytes -= *size;
    return ptr;
}

static void *cache_malloc(void *ctx, size_t size) {
    (void)ctx;
    void *p = take(size);
    return p != NULL ? p : malloc(size);
}

static void *cache_calloc(void *ctx, size_t nelem, size_t elsize) {
    (void)ctx;
    if (elsize != 0 && nelem > SIZE_MAX / elsize) return NULL;
    void *p = take(nelem * elsize);
    if (p == NULL) return calloc(nelem, elsize);
    memset(p, 0, nelem * elsize); /* cheaper than faulting in fresh zero pages */
    return p;
}

static void *cache_realloc(void *ctx, void *ptr, size_t new_size) {
    (void)ctx;
    return realloc(ptr, new_size);
}

static void cache_free(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    if (ptr == NULL) return;
    if (size < min_bytes || size > limit_bytes || USABLE_SIZE(ptr) < size) {
        free(ptr);
        return;
    }
    void *evicted[CACHE_SLOTS + 1];
    int n_evicted = 0;
    pthread_mutex_lock(&lock);
    int empty = -1;
    for (;;) { /* room for size bytes in a free slot, the oldest blocks out */
        empty = -1;
        for (int i = 0; i < CACHE_SLOTS && empty < 0; ++i)
            if (slots[i].ptr == NULL) empty = i;
        if (empty >= 0 && cached_bytes + size <= limit_bytes) break;
        size_t old_size;
        void *old = take_oldest(&old_size);
        if (old == NULL) break; /* cannot happen: size <= limit_bytes */
        evicted[n_evicted++] = old;
    }
    if (empty >= 0 && cached_bytes + size <= limit_bytes) {
        slots[empty] = (cache_slot){ptr, size, ++clock_ticks};
        cached_bytes += size;
        ptr = NULL;
    }
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n_evicted; ++i) free(evicted[i]); /* outside the lock: munmap takes time */
    free(ptr);
}

static np_handler handler = {
    "fastconv_array_cache", 1, {NULL, cache_malloc, cache_calloc, cache_realloc, cache_free}};

/* PyCapsule keeps a pointer to its name: it must outlive the capsule. */
static const char capsule_name[] = "mem_handler";

void *fc_array_cache_handler(void) { return &handler; }

const char *fc_array_cache_capsule_name(void) { return capsule_name; }

int fc_array_cache_configure(int64_t limit, int64_t min_size) {
    static int fork_handlers = 0;
    if (limit < 0 || min_size < 1) return FC_ERR_SIZE;
    pthread_mutex_lock(&lock);
    if (!fork_handlers) fork_handlers = pthread_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork) == 0;
    limit_bytes = (size_t)limit;
    min_bytes = (size_t)min_size;
    pthread_mutex_unlock(&lock);
    fc_array_cache_clear(); /* blocks beyond a lower limit, or smaller than a higher minimum */
    return FC_OK;
}

int64_t fc_array_cache_clear(void) {
    void *freed[CACHE_SLOTS];
    int n = 0;
    size_t bytes = 0, size;
    pthread_mutex_lock(&lock);
    for (void *p; (p = take_oldest(&size)) != NULL;) freed[n++] = p, bytes += size;
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n; ++i) free(freed[i]);
    return (int64_t)bytes;
}

void fc_array_cache_stats(int64_t *out) {
    pthread_mutex_lock(&lock);
    int64_t blocks = 0;
    for (int i = 0; i < CACHE_SLOTS; ++i) blocks += slots[i].ptr != NULL;
    out[0] = (int64_t)cached_bytes;
    out[1] = blocks;
    out[2] = (int64_t)hits;
    out[3] = (int64_t)misses;
    pthread_mutex_unlock(&lock);
}
