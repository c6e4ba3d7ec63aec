/* fastconv C kernels: prototypes and status codes.
 *
 * The block between CDEF BEGIN and CDEF END is also the cffi cdef (read by
 * fastconv/_build_cffi.py), so it holds only plain C declarations: no macros,
 * no `restrict` (the definitions add it; a top-level qualifier on a parameter
 * does not change the function type).
 *
 * Contract shared by every backend: inputs, then outputs (allocated by the
 * Python caller, C-contiguous), then integer sizes.  Kernels validate the sizes
 * they rely on and return a status instead of touching memory they were not
 * given; the Python wrapper turns a non-zero status into an exception.
 */
#ifndef FASTCONV_H
#define FASTCONV_H
#include <stdint.h>

/* CDEF BEGIN */
enum fc_status {
    FC_OK = 0,
    FC_ERR_SIZE = 1,   /* a size argument is non-positive or inconsistent */
    FC_ERR_INDEX = 2,  /* an index array points outside its plane */
    FC_ERR_NOMEM = 3   /* a scratch allocation failed */
};

void fc_set_num_threads(int n);
int fc_get_num_threads(void);
int fc_has_openmp(void);

int fc_im2col_f32(const float *x, float *col,
                  int64_t n, int64_t c, int64_t h, int64_t w, int64_t fh, int64_t fw,
                  int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                  int64_t oh, int64_t ow);
int fc_im2col_f64(const double *x, double *col,
                  int64_t n, int64_t c, int64_t h, int64_t w, int64_t fh, int64_t fw,
                  int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                  int64_t oh, int64_t ow);
int fc_col2im_f32(const float *col, float *x,
                  int64_t n, int64_t c, int64_t h, int64_t w, int64_t fh, int64_t fw,
                  int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                  int64_t oh, int64_t ow);
int fc_col2im_f64(const double *col, double *x,
                  int64_t n, int64_t c, int64_t h, int64_t w, int64_t fh, int64_t fw,
                  int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                  int64_t oh, int64_t ow);
/* CDEF END */

#endif
