/* Which x86-64 level (psABI micro-architecture levels) this CPU and OS run:
 * the Python side loads the widest extension built for it (see
 * fastconv/_build_cffi.py).  __builtin_cpu_supports also checks that the OS
 * saves the wider registers.  0 on other architectures. */
#include "fastconv.h"

int fc_cpu_level(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt") &&
          __builtin_cpu_supports("ssse3")))
        return 1;
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
          __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2")))
        return 2;
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
          __builtin_cpu_supports("avx512vl")))
        return 3;
    return 4;
#else
    return 0;
#endif
}

/* The level this extension was compiled for (its -march), from the
 * compiler's predefined macros. */
int fc_built_level(void) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    return 4;
#elif defined(__AVX2__) && defined(__FMA__)
    return 3;
#elif defined(__SSE4_2__)
    return 2;
#elif defined(__x86_64__)
    return 1;
#else
    return 0;
#endif
}
