/* im2col / col2im for one element type.  Included by im2col.c with
 * REAL (element type) and FN(name) (adds the dtype suffix) defined.
 *
 * col[(c*FH + i)*FW + j, (n*OH + oh)*OW + ow] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]
 */

static int FN(check_conv_sizes)(int64_t n, int64_t c, int64_t h, int64_t w, int64_t fh,
                                int64_t fw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                int64_t dh, int64_t dw, int64_t oh, int64_t ow) {
    if (n < 1 || c < 1 || h < 1 || w < 1 || fh < 1 || fw < 1 || sh < 1 || sw < 1 ||
        ph < 0 || pw < 0 || dh < 1 || dw < 1 || oh < 1 || ow < 1)
        return FC_ERR_SIZE;
    if (oh != (h + 2 * ph - dh * (fh - 1) - 1) / sh + 1 ||
        ow != (w + 2 * pw - dw * (fw - 1) - 1) / sw + 1)
        return FC_ERR_SIZE;
    return FC_OK;
}

int FN(fc_im2col)(const REAL *restrict x, REAL *restrict col,
                  int64_t n, int64_t c, int64_t h, int64_t w, int64_t fh, int64_t fw,
                  int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                  int64_t oh, int64_t ow) {
    int status = FN(check_conv_sizes)(n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow);
    if (status != FC_OK) return status;
    const int64_t ncols = n * oh * ow;
    const int64_t ntasks = c * fh * fw * n;
    /* One task = one (row, image) pair: a contiguous run of OH*OW outputs. */
#pragma omp parallel for num_threads(fc_nthreads) schedule(static)
    for (int64_t t = 0; t < ntasks; ++t) {
        const int64_t img = t % n, row = t / n;
        const int64_t j = row % fw, i = (row / fw) % fh, ch = row / (fw * fh);
        const REAL *plane = x + (img * c + ch) * h * w;
        REAL *dst = col + row * ncols + img * oh * ow;
        int64_t x_lo, x_hi;
        fc_valid_range(w, ow, sw, j, dw, pw, &x_lo, &x_hi);
        for (int64_t oy = 0; oy < oh; ++oy) {
            REAL *d = dst + oy * ow;
            const int64_t iy = oy * sh + i * dh - ph;
            if (iy < 0 || iy >= h) {
                for (int64_t ox = 0; ox < ow; ++ox) d[ox] = 0;
                continue;
            }
            const REAL *src = plane + iy * w + j * dw - pw;
            for (int64_t ox = 0; ox < x_lo; ++ox) d[ox] = 0;
            if (sw == 1) {
                for (int64_t ox = x_lo; ox < x_hi; ++ox) d[ox] = src[ox];
            } else {
                for (int64_t ox = x_lo; ox < x_hi; ++ox) d[ox] = src[ox * sw];
            }
            for (int64_t ox = x_hi; ox < ow; ++ox) d[ox] = 0;
        }
    }
    return FC_OK;
}

int FN(fc_col2im)(const REAL *restrict col, REAL *restrict x,
                  int64_t n, int64_t c, int64_t h, int64_t w, int64_t fh, int64_t fw,
                  int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                  int64_t oh, int64_t ow) {
    int status = FN(check_conv_sizes)(n, c, h, w, fh, fw, sh, sw, ph, pw, dh, dw, oh, ow);
    if (status != FC_OK) return status;
    const int64_t ncols = n * oh * ow;
    /* Each task owns one (image, channel) plane of x, so no two threads ever
     * add into the same address. */
#pragma omp parallel for num_threads(fc_nthreads) schedule(static)
    for (int64_t p = 0; p < n * c; ++p) {
        const int64_t img = p / c, ch = p % c;
        REAL *plane = x + p * h * w;
        for (int64_t k = 0; k < h * w; ++k) plane[k] = 0;
        for (int64_t i = 0; i < fh; ++i) {
            for (int64_t j = 0; j < fw; ++j) {
                const REAL *src = col + ((ch * fh + i) * fw + j) * ncols + img * oh * ow;
                int64_t x_lo, x_hi;
                fc_valid_range(w, ow, sw, j, dw, pw, &x_lo, &x_hi);
                for (int64_t oy = 0; oy < oh; ++oy) {
                    const int64_t iy = oy * sh + i * dh - ph;
                    if (iy < 0 || iy >= h) continue;
                    REAL *d = plane + iy * w + j * dw - pw;
                    const REAL *s = src + oy * ow;
                    if (sw == 1) {
                        for (int64_t ox = x_lo; ox < x_hi; ++ox) d[ox] += s[ox];
                    } else {
                        for (int64_t ox = x_lo; ox < x_hi; ++ox) d[ox * sw] += s[ox];
                    }
                }
            }
        }
    }
    return FC_OK;
}
