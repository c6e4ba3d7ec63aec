/* col2im of one (image, channel) plane, float32, column stride 1, AVX-512.
 *
 * The generic kernel adds one column row (OW elements) at a time into the
 * plane; with OW ~ 11 that is mostly loop overhead.  Here each 16-wide strip
 * of an output row is an accumulator register: every (i, j) tap that reaches
 * the strip is one unaligned load from col and one masked *register* add
 * (lanes outside the tap's valid range are left alone).  Memory is touched
 * with masks only at the very ends of col and of the plane. */
#ifndef FASTCONV_COL2IM_AVX512_H
#define FASTCONV_COL2IM_AVX512_H
#if defined(__AVX512F__)
#include <immintrin.h>
#include "common.h"

static inline __mmask16 fc_lane_mask(int64_t lo, int64_t hi) {
    return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

/* src: col + (ch*FH*FW)*ncols + img*OH*OW; plane: x + (img*C + ch)*H*W. */
static void fc_col2im_plane_avx512_f32(const float *src, float *plane, int64_t ncols,
                                       const float *col_begin, const float *col_end,
                                       int64_t h, int64_t w, int64_t fh, int64_t fw,
                                       int64_t sh, int64_t ph, int64_t pw, int64_t dh,
                                       int64_t dw, int64_t oh, int64_t ow) {
    for (int64_t iy = 0; iy < h; ++iy) {
        for (int64_t x0 = 0; x0 < w; x0 += 16) {
            __m512 acc = _mm512_setzero_ps();
            for (int64_t i = 0; i < fh; ++i) {
                const int64_t t = iy + ph - i * dh; /* = oy * sh for a tap that lands here */
                if (t < 0) break;                  /* t only falls as i grows */
                if (t % sh != 0) continue;
                const int64_t oy = t / sh;
                if (oy >= oh) continue;
                const float *row = src + i * fw * ncols + oy * ow;
                for (int64_t j = 0; j < fw; ++j, row += ncols) {
                    const int64_t off = x0 + pw - j * dw; /* ox read by lane 0 */
                    int64_t lo = -off > 0 ? -off : 0;
                    int64_t hi = ow - off;
                    if (hi > w - x0) hi = w - x0;
                    if (hi > 16) hi = 16;
                    if (lo >= hi) continue;
                    const __mmask16 m = fc_lane_mask(lo, hi);
                    const float *p = row + off;
                    const __m512 v = (p >= col_begin && p + 16 <= col_end)
                                         ? _mm512_loadu_ps(p)
                                         : _mm512_maskz_loadu_ps(m, p);
                    acc = _mm512_mask_add_ps(acc, m, acc, v);
                }
            }
            float *d = plane + iy * w + x0;
            if (d + 16 <= plane + h * w) {
                /* Full store; lanes past this strip land later in this plane,
                 * which is written after this one. */
                _mm512_storeu_ps(d, acc);
            } else {
                _mm512_mask_storeu_ps(d, fc_lane_mask(0, w - x0), acc);
            }
        }
    }
}
#define FC_HAVE_COL2IM_PLANE_F32 1
#endif
#endif
