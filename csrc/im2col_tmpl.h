/* im2col / col2im for one element type.  Included by im2col.c with
 * REAL (element type) and FN(name) (adds the dtype suffix) defined.
 *
 * col[(c*FH + i)*FW + j, (n*OH + oh)*OW + ow] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]
 *
 * Rows are short (OW is often 11..32 in small CNNs), so the loops keep
 * integer division out of everything but per-task setup, and valid ranges
 * (outputs that read real pixels, not padding) are computed once per call.
 */
#include <stdlib.h>
#include <string.h>

/* Elements in one 64-byte vector block. */
#define VEC ((int64_t)(64 / sizeof(REAL)))

int FN(fc_im2col)(const REAL *restrict x, REAL *restrict col, const fc_conv_geom *g) {
    FC_CONV_LOCALS(g);
    int status = fc_check_conv_sizes(n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow);
    if (status != FC_OK) return status;
    int64_t *ranges = fc_window_ranges(h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow);
    if (ranges == NULL) return FC_ERR_NOMEM;
    const int64_t ncols = n * oh * ow, rows = c * fh * fw;
    const REAL *x_end = x + n * c * h * w;
    /* A task = one col row x a group of images: a contiguous run of at least
     * ~4K outputs, so per-task setup is noise and 2 threads stay balanced
     * even when C*FH*FW is small (9 rows for a 1-channel 3x3 layer). */
    const int64_t group = fc_clamp(4096 / (oh * ow), 1, n);
    const int64_t groups = (n + group - 1) / group;
#pragma omp parallel for num_threads(fc_threads_for(rows * ncols)) schedule(static)
    for (int64_t t = 0; t < rows * groups; ++t) {
        const int64_t row = t / groups, g = t % groups;
        const int64_t j = row % fw, i = (row / fw) % fh, ch = row / (fw * fh);
        const int64_t y_lo = ranges[2 * i], y_hi = ranges[2 * i + 1];
        const int64_t x_lo = ranges[2 * (fh + j)], x_hi = ranges[2 * (fh + j) + 1];
        const int64_t img_end = g * group + group < n ? g * group + group : n;
        REAL *d = col + row * ncols + g * group * oh * ow;
        /* Everything this task writes: vector spill must stay inside it. */
        REAL *const d_end = col + row * ncols + img_end * oh * ow;
        const int64_t len = x_hi - x_lo;
        const int64_t span = (len + VEC - 1) / VEC * VEC;
        for (int64_t img = g * group; img < img_end; ++img, d += oh * ow) {
            const REAL *plane = x + (img * c + ch) * h * w + i * dh * w + j * dw - ph * w - pw;
            /* 1. Copy the pixels of every row that reads the image.  With
             * stride 1 the copy moves whole 64-byte blocks and may spill past
             * the row into what follows; steps 2 and 3 rewrite that, and the
             * spill never leaves this task's output or x. */
            for (int64_t oy = y_lo; oy < y_hi; ++oy) {
                REAL *dd = d + oy * ow + x_lo;
                const REAL *ss = plane + oy * sh * w + x_lo * sw;
                if (sw != 1) {
                    for (int64_t k = 0; k < len; ++k) dd[k] = ss[k * sw];
                } else if (dd + span <= d_end && ss + span <= x_end) {
                    for (int64_t k = 0; k < span; k += VEC) memcpy(dd + k, ss + k, VEC * sizeof(REAL));
                } else {
                    FN(fc_row_copy)(dd, ss, len);
                }
            }
            /* 2. Rows that fall in the vertical padding. */
            if (y_lo > 0) memset(d, 0, sizeof(REAL) * y_lo * ow);
            if (y_hi < oh) memset(d + y_hi * ow, 0, sizeof(REAL) * (oh - y_hi) * ow);
            /* 3. Left and right margins (horizontal padding) and spill. */
            if (x_lo > 0 || x_hi < ow) {
                for (int64_t oy = y_lo; oy < y_hi; ++oy) {
                    REAL *dd = d + oy * ow;
                    for (int64_t k = 0; k < x_lo; ++k) dd[k] = 0;
                    for (int64_t k = x_hi; k < ow; ++k) dd[k] = 0;
                }
            }
        }
    }
    free(ranges);
    return FC_OK;
}

int FN(fc_col2im)(const REAL *restrict col, REAL *restrict x, const fc_conv_geom *g) {
    FC_CONV_LOCALS(g);
    int status = fc_check_conv_sizes(n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow);
    if (status != FC_OK) return status;
    int64_t *ranges = fc_window_ranges(h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow);
    if (ranges == NULL) return FC_ERR_NOMEM;
    const int64_t ncols = n * oh * ow;
    /* Each task owns one (image, channel) plane of x, so no two threads ever
     * add into the same address.  Tasks run channel by channel: consecutive
     * tasks then read each of the channel's FH*FW col rows onward from where
     * the last one stopped (streams the prefetcher keeps), instead of
     * jumping to another channel's rows (20 % slower on (128, 64, 32, 32)). */
#pragma omp parallel for num_threads(fc_threads_for(c * fh * fw * ncols)) schedule(static)
    for (int64_t p = 0; p < n * c; ++p) {
        const int64_t img = p % n, ch = p / n;
        REAL *plane = x + (img * c + ch) * h * w;
        const REAL *src = col + ch * fh * fw * ncols + img * oh * ow;
#ifdef COL2IM_PLANE_FAST
        if (sw == 1) {
            COL2IM_PLANE_FAST(src, plane, ncols, col, col + c * fh * fw * ncols, h, w, fh, fw,
                              sh, ph, pw, dh, dw, oh, ow);
            continue;
        }
#endif
        memset(plane, 0, sizeof(REAL) * h * w);
        for (int64_t i = 0; i < fh; ++i) {
            const int64_t y_lo = ranges[2 * i], y_hi = ranges[2 * i + 1];
            for (int64_t j = 0; j < fw; ++j, src += ncols) {
                const int64_t x_lo = ranges[2 * (fh + j)], x_hi = ranges[2 * (fh + j) + 1];
                for (int64_t oy = y_lo; oy < y_hi; ++oy) {
                    REAL *d = plane + (oy * sh + i * dh - ph) * w + j * dw - pw;
                    const REAL *s = src + oy * ow;
                    if (sw == 1) {
                        FN(fc_row_add)(d + x_lo, s + x_lo, x_hi - x_lo);
                    } else {
                        for (int64_t ox = x_lo; ox < x_hi; ++ox) d[ox * sw] += s[ox];
                    }
                }
            }
        }
    }
    free(ranges);
    return FC_OK;
}

#undef VEC
