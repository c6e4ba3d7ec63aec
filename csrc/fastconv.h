/* fastconv C kernels: prototypes and status codes.
 *
 * The block between CDEF BEGIN and CDEF END is also the cffi cdef (read by
 * fastconv/_build_cffi.py), so it holds only plain C declarations: no macros,
 * no `restrict` (the definitions add it; a top-level qualifier on a parameter
 * does not change the function type).
 *
 * Contract shared by every backend: inputs, then outputs (allocated by the
 * Python caller, C-contiguous), then the geometry record (fc_conv_geom,
 * fc_pool_geom) or, for plain shapes, integer sizes.  Kernels validate the sizes
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
    FC_ERR_NOMEM = 3,  /* a scratch allocation failed */
    FC_ERR_NOBLAS = 4  /* a GEMM kernel was called before fc_set_blas found a BLAS */
};

/* The geometry of a convolution, one value: x (n, c, h, w), weights
 * (f, c / groups, kh, kw), out (n, f, oh, ow).  fastconv._geometry.ConvGeometry
 * is its Python side (same fields, same order; tests/test_contract.py). */
typedef struct {
    int64_t n, c, h, w;
    int64_t f, kh, kw;
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t oh, ow;
    int64_t groups;
} fc_conv_geom;

/* The geometry of a pooling window: x (n, c, h, w) -> out (n, c, oh, ow),
 * window (kh, kw), stride (sh, sw), padding (ph, pw); ceil_mode: (oh, ow)
 * rounded up, so the last window may run past the padding.
 * fastconv._geometry.PoolGeometry is its Python side. */
typedef struct {
    int64_t n, c, h, w;
    int64_t kh, kw, sh, sw, ph, pw;
    int64_t oh, ow;
    int64_t ceil_mode;
} fc_pool_geom;

void fc_set_num_threads(int n);
int fc_get_num_threads(void);
int fc_has_openmp(void);
int fc_forked_single_threaded(void);
int fc_cpu_level(void);
int fc_built_level(void);
/* NumPy's BLAS, found at import (csrc/blas.c): ?gemm as CBLAS, its thread-count
 * getter/setter (may be NULL), and whether its integers are 64-bit.  Returns
 * FC_ERR_SIZE (and stays detached) when a test product comes out wrong. */
int fc_set_blas(void *sgemm, void *dgemm, void *get_threads, void *set_threads, int int64_ints);
int fc_blas_ready(void);

int fc_im2col_f32(const float *x, float *col, const fc_conv_geom *g);
int fc_im2col_f64(const double *x, double *col, const fc_conv_geom *g);
int fc_col2im_f32(const float *col, float *x, const fc_conv_geom *g);
int fc_col2im_f64(const double *col, double *x, const fc_conv_geom *g);

/* Pooling (csrc/pool.c).  Index arrays hold, per output, the flat position
 * h*W + w of the winner inside its own (H, W) plane. */
int fc_maxpool_fwd_f32(const float *x, float *out, int64_t *idx, const fc_pool_geom *g);
int fc_maxpool_bwd_f32(const float *d_out, const int64_t *idx, float *d_x,
                       int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow);
int fc_maxunpool_f32(const float *x, const int64_t *idx, float *out,
                     int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow);
int fc_avgpool_fwd_f32(const float *x, float *out, const fc_pool_geom *g);
int fc_avgpool_bwd_f32(const float *d_out, float *d_x, const fc_pool_geom *g);
int fc_adaptive_avgpool_fwd_f32(const float *x, float *out,
                                int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow);
int fc_adaptive_avgpool_bwd_f32(const float *d_out, float *d_x,
                                int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow);
int fc_maxpool_fwd_f64(const double *x, double *out, int64_t *idx, const fc_pool_geom *g);
int fc_maxpool_bwd_f64(const double *d_out, const int64_t *idx, double *d_x,
                       int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow);
int fc_maxunpool_f64(const double *x, const int64_t *idx, double *out,
                     int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow);
int fc_avgpool_fwd_f64(const double *x, double *out, const fc_pool_geom *g);
int fc_avgpool_bwd_f64(const double *d_out, double *d_x, const fc_pool_geom *g);
int fc_adaptive_avgpool_fwd_f64(const double *x, double *out,
                                int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow);
int fc_adaptive_avgpool_bwd_f64(const double *d_out, double *d_x,
                                int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow);

/* BatchNorm building blocks (csrc/batchnorm.c); x is (N, C, S), S = H*W or 1.
 * Statistics are accumulated in double whatever the element type.  BatchNorm
 * + ReLU in one pass each way: channel_affine with relu clamps its output at
 * 0 (with has_res after adding res, x's shape: a residual block's tail); with has_mask, the backward kernels count d_out only where mask (that
 * output) > 0, and do not read mask otherwise. */
int fc_bn_stats_f32(const float *x, float *mean, float *var, int64_t n, int64_t c, int64_t s);
int fc_channel_affine_f32(const float *x, const float *a, const float *b, const float *res, float *out,
                          int64_t n, int64_t c, int64_t s, int64_t relu, int64_t has_res);
int fc_bn_bwd_reduce_f32(const float *d_out, const float *x, const float *mean, const float *mask,
                         float *sum_dy, float *sum_dy_xmu, int64_t n, int64_t c, int64_t s, int64_t has_mask);
int fc_bn_bwd_apply_f32(const float *d_out, const float *x, const float *mean, const float *mask, const float *k_dy,
                        const float *k_x, const float *k_0, float *d_x, int64_t n, int64_t c, int64_t s,
                        int64_t has_mask);
/* fc_bn_bwd_reduce, the coefficients of backends/_bn_terms.py (backward_terms)
 * and fc_bn_bwd_apply in one call, channel by channel (the apply reads what
 * the reduce just read, from cache): the same outputs, the same bits. */
int fc_bn_bwd_fused_f32(const float *d_out, const float *x, const float *mean, const float *mask,
                        const float *gamma, const float *inv_std, float *sum_dy, float *sum_dy_xmu, float *d_x,
                        int64_t n, int64_t c, int64_t s, int64_t has_mask, int64_t training);
int fc_bn_bwd_fused_f64(const double *d_out, const double *x, const double *mean, const double *mask,
                        const double *gamma, const double *inv_std, double *sum_dy, double *sum_dy_xmu,
                        double *d_x, int64_t n, int64_t c, int64_t s, int64_t has_mask, int64_t training);
/* fc_bn_stats, the scale and shift of backends/_bn_terms.py (forward_terms)
 * and fc_channel_affine in one call (training), channel by channel where a
 * channel fits in L2 (the affine reads x from cache): the same bits. */
int fc_bn_fwd_fused_f32(const float *x, const float *gamma, const float *beta, const float *res, float *mean,
                        float *var, float *out, int64_t n, int64_t c, int64_t s, double eps, int64_t relu,
                        int64_t has_res);
int fc_bn_fwd_fused_f64(const double *x, const double *gamma, const double *beta, const double *res, double *mean,
                        double *var, double *out, int64_t n, int64_t c, int64_t s, double eps, int64_t relu,
                        int64_t has_res);
int fc_bn_stats_f64(const double *x, double *mean, double *var, int64_t n, int64_t c, int64_t s);
int fc_channel_affine_f64(const double *x, const double *a, const double *b, const double *res, double *out,
                          int64_t n, int64_t c, int64_t s, int64_t relu, int64_t has_res);
int fc_bn_bwd_reduce_f64(const double *d_out, const double *x, const double *mean, const double *mask,
                         double *sum_dy, double *sum_dy_xmu, int64_t n, int64_t c, int64_t s, int64_t has_mask);
int fc_bn_bwd_apply_f64(const double *d_out, const double *x, const double *mean, const double *mask, const double *k_dy,
                        const double *k_x, const double *k_0, double *d_x, int64_t n, int64_t c, int64_t s,
                        int64_t has_mask);
/* BatchNorm's affine + ReLU + max pool as one stage (csrc/bn_pool_tmpl.h):
 * x, d_x (N, C, H, W); out, code, d_out (N, C, OH, OW); windows that do not
 * overlap, no padding, floor mode, at most 256 taps.  fwd: out = max(max of
 * x * scale[c] + shift[c] over the window, 0), code = the winner's offset
 * i * kw + j in its window.  dy: the pooled gradient at each window's winner
 * where out > 0, 0 elsewhere.  bwd_reduce: sum(dy) and sum(dy * (x - mean))
 * per channel over the winners; bwd_apply: d_x = dy * k_dy[c] + (x - mean[c]) *
 * k_x[c] + k_0[c].  A code outside its window: FC_ERR_INDEX. */
int fc_bnpool_fwd_f32(const float *x, const float *scale, const float *shift, float *out, uint8_t *code,
                      const fc_pool_geom *g);
int fc_bnpool_bwd_reduce_f32(const float *d_out, const float *x, const float *mean, const float *out,
                             const uint8_t *code, float *sum_dy, float *sum_dy_xmu, const fc_pool_geom *g);
int fc_bnpool_bwd_apply_f32(const float *d_out, const float *x, const float *mean, const float *out,
                            const uint8_t *code, const float *k_dy, const float *k_x, const float *k_0, float *d_x,
                            const fc_pool_geom *g);
int fc_bnpool_fwd_f64(const double *x, const double *scale, const double *shift, double *out, uint8_t *code,
                      const fc_pool_geom *g);
int fc_bnpool_bwd_reduce_f64(const double *d_out, const double *x, const double *mean, const double *out,
                             const uint8_t *code, double *sum_dy, double *sum_dy_xmu, const fc_pool_geom *g);
int fc_bnpool_bwd_apply_f64(const double *d_out, const double *x, const double *mean, const double *out,
                            const uint8_t *code, const double *k_dy, const double *k_x, const double *k_0,
                            double *d_x, const fc_pool_geom *g);
/* fc_bn_stats, forward_terms and fc_bnpool_fwd in one call (training), and
 * fc_bnpool_bwd_reduce, backward_terms and fc_bnpool_bwd_apply in one call,
 * channel by channel where a channel fits in L2 (the second pass reads x
 * from cache): the same bits as the separate calls. */
int fc_bnpool_fwd_fused_f32(const float *x, const float *gamma, const float *beta, float *mean, float *var,
                            float *out, uint8_t *code, double eps, const fc_pool_geom *g);
int fc_bnpool_fwd_fused_f64(const double *x, const double *gamma, const double *beta, double *mean, double *var,
                            double *out, uint8_t *code, double eps, const fc_pool_geom *g);
int fc_bnpool_bwd_fused_f32(const float *d_out, const float *x, const float *mean, const float *out,
                            const uint8_t *code, const float *gamma, const float *inv_std, float *sum_dy,
                            float *sum_dy_xmu, float *d_x, int64_t training, const fc_pool_geom *g);
int fc_bnpool_bwd_fused_f64(const double *d_out, const double *x, const double *mean, const double *out,
                            const uint8_t *code, const double *gamma, const double *inv_std, double *sum_dy,
                            double *sum_dy_xmu, double *d_x, int64_t training, const fc_pool_geom *g);
/* A convolution fused with the max pool after it (csrc/conv_maxpool.c);
 * out, idx, d_out and mask are (N, F, PH, PW), weights (F, C, FH, FW).  With
 * has_mask, d_out counts only where mask > 0 (mask: the output of a ReLU
 * after the pool); mask is not read otherwise. */
int fc_conv_maxpool_fwd_f32(const float *x, const float *wt, const float *b, float *out, int64_t *idx,
                            const fc_conv_geom *cg, const fc_pool_geom *pg);
int fc_conv_maxpool_bwd_params_f32(const float *x, const float *d_out, const float *mask, const int64_t *idx,
                                   float *d_w, float *d_b, const fc_conv_geom *cg, const fc_pool_geom *pg,
                                   int64_t has_mask);
int fc_conv_maxpool_fwd_f64(const double *x, const double *wt, const double *b, double *out, int64_t *idx,
                            const fc_conv_geom *cg, const fc_pool_geom *pg);
int fc_conv_maxpool_bwd_params_f64(const double *x, const double *d_out, const double *mask, const int64_t *idx,
                                   double *d_w, double *d_b, const fc_conv_geom *cg, const fc_pool_geom *pg,
                                   int64_t has_mask);
/* 1 when the conv_maxpool kernels take this geometry with their phase kernels
 * (stride 1, no dilation, a 2x2/2 pool, few taps): the forward then beats
 * im2row + GEMM. */
int fc_conv_maxpool_phase_ok(const fc_conv_geom *cg, const fc_pool_geom *pg);
/* The input gradient of conv_maxpool, from the pooled gradient and indices
 * alone (csrc/conv_pool_grad_tmpl.h); any tap count. */
int fc_conv_maxpool_bwd_input_f32(const float *d_out, const float *mask, const int64_t *idx, const float *wt,
                                  float *d_x, const fc_conv_geom *cg, const fc_pool_geom *pg, int64_t has_mask);
int fc_conv_maxpool_bwd_input_f64(const double *d_out, const double *mask, const int64_t *idx, const double *wt,
                                  double *d_x, const fc_conv_geom *cg, const fc_pool_geom *pg, int64_t has_mask);
/* Forward of a many-tap convolution + max pool as im2row, a GEMM (in
 * Python) and a pool over its (position, filter) rows (csrc/conv_rows_tmpl.h). */
int fc_im2row_f32(const float *x, float *rows, const fc_conv_geom *cg, int64_t uh, int64_t uw);
int fc_im2row_f64(const double *x, double *rows, const fc_conv_geom *cg, int64_t uh, int64_t uw);
int fc_rows_maxpool_f32(const float *y, const float *bias, float *out, int64_t *idx, const fc_pool_geom *pg,
                        int64_t uh, int64_t uw);
int fc_rows_maxpool_f64(const double *y, const double *bias, double *out, int64_t *idx, const fc_pool_geom *pg,
                        int64_t uh, int64_t uw);
/* Convolution as implicit GEMM (csrc/conv_gemm.c): column tiles built in
 * cache, one BLAS GEMM per (image, tile), output NCHW.  b, d_x and d_b may be
 * NULL (no bias / no input or bias gradient). */
int fc_conv2d_fwd_f32(const float *x, const float *wt, const float *b, float *out, const fc_conv_geom *g);
int fc_conv2d_bwd_f32(const float *x, const float *wt, const float *d_out, float *d_x, float *d_w,
                      float *d_b, const fc_conv_geom *g);
int fc_conv2d_fwd_f64(const double *x, const double *wt, const double *b, double *out, const fc_conv_geom *g);
int fc_conv2d_bwd_f64(const double *x, const double *wt, const double *d_out, double *d_x, double *d_w,
                      double *d_b, const fc_conv_geom *g);
/* Direct convolution for stride 1 and one group (csrc/conv_direct.c): the
 * padded image read at shifted offsets, no im2col, no BLAS; FC_ERR_SIZE for
 * other geometries.  b, d_x and d_b may be NULL. */
int fc_conv2d_direct_fwd_f32(const float *x, const float *wt, const float *b, float *out, const fc_conv_geom *g);
int fc_conv2d_direct_bwd_f32(const float *x, const float *wt, const float *d_out, float *d_x, float *d_w,
                             float *d_b, const fc_conv_geom *g);
int fc_conv2d_direct_fwd_f64(const double *x, const double *wt, const double *b, double *out,
                             const fc_conv_geom *g);
int fc_conv2d_direct_bwd_f64(const double *x, const double *wt, const double *d_out, double *d_x, double *d_w,
                             double *d_b, const fc_conv_geom *g);
/* Convolution with output channels along the vector lanes, strides 1 or 2,
 * one group, 0 <= padding <= (k-1)*d (csrc/conv_ocvec_tmpl.h, in
 * conv_direct.c): register blocks of two channel vectors x a tile of real
 * output positions, for small maps; stride 1: its own input gradient and
 * 3x3 weight gradient, other weight gradients (and strided backwards) the
 * direct kernel's.  FC_ERR_SIZE for other geometries; b,
 * d_x and d_b may be NULL. */
int fc_conv2d_ocvec_fwd_f32(const float *x, const float *wt, const float *b, float *out, const fc_conv_geom *g);
int fc_conv2d_ocvec_bwd_f32(const float *x, const float *wt, const float *d_out, float *d_x, float *d_w,
                            float *d_b, const fc_conv_geom *g);
int fc_conv2d_ocvec_fwd_f64(const double *x, const double *wt, const double *b, double *out,
                            const fc_conv_geom *g);
int fc_conv2d_ocvec_bwd_f64(const double *x, const double *wt, const double *d_out, double *d_x, double *d_w,
                            double *d_b, const fc_conv_geom *g);
/* Winograd F(2x2, 3x3) convolution (csrc/conv_winograd.c): 3x3, stride 1, no
 * dilation, one group, padding at most 2; FC_ERR_SIZE for other geometries,
 * FC_ERR_NOBLAS without a BLAS.  The backward's weight and bias gradients
 * are the direct kernel's, its input gradient a Winograd convolution of
 * d_out.  b, d_x and d_b may be NULL. */
int fc_conv2d_winograd_fwd_f32(const float *x, const float *wt, const float *b, float *out, const fc_conv_geom *g);
int fc_conv2d_winograd_bwd_f32(const float *x, const float *wt, const float *d_out, float *d_x, float *d_w,
                               float *d_b, const fc_conv_geom *g);
int fc_conv2d_winograd_fwd_f64(const double *x, const double *wt, const double *b, double *out,
                               const fc_conv_geom *g);
int fc_conv2d_winograd_bwd_f64(const double *x, const double *wt, const double *d_out, double *d_x, double *d_w,
                               double *d_b, const fc_conv_geom *g);
/* Dense layers (csrc/linear.c): x (n, k), w (k, f), out and d_out (n, f), all
 * C-contiguous.  Forward: out = x @ w + bias (bias (f,) or NULL).  Backward:
 * d_w = x^T @ d_out, d_b = d_out's column sums (NULL: not computed), d_x =
 * d_out @ w^T (NULL: not computed). */
int fc_linear_fwd_f32(const float *x, const float *w, const float *bias, float *out, int64_t n, int64_t k, int64_t f);
int fc_linear_bwd_f32(const float *x, const float *w, const float *d_out, float *d_x, float *d_w, float *d_b,
                      int64_t n, int64_t k, int64_t f);
int fc_linear_fwd_f64(const double *x, const double *w, const double *bias, double *out, int64_t n, int64_t k,
                      int64_t f);
int fc_linear_bwd_f64(const double *x, const double *w, const double *d_out, double *d_x, double *d_w, double *d_b,
                      int64_t n, int64_t k, int64_t f);
/* SGD with momentum, in place (csrc/optim.c); velocity is ignored when momentum == 0. */
int fc_sgd_update_f32(float *value, const float *grad, float *velocity, int64_t n, double lr,
                    double momentum, double weight_decay, int64_t nesterov, int64_t first);
int fc_sgd_update_f64(double *value, const double *grad, double *velocity, int64_t n, double lr,
                    double momentum, double weight_decay, int64_t nesterov, int64_t first);
/* Elementwise (csrc/elementwise.c), on `size` elements: out = max(x, 0)
 * (NaN kept, -0 to +0, as NumPy's maximum), d_x = d_out * (out > 0),
 * d_x = other + d_out * (out > 0) (d_x apart from the inputs), and
 * out = a + b (out may be a or b). */
int fc_relu_f32(const float *x, float *out, int64_t size);
int fc_relu_bwd_f32(const float *d_out, const float *out, float *d_x, int64_t size);
int fc_relu_bwd_add_f32(const float *d_out, const float *out, const float *other, float *d_x, int64_t size);
int fc_add_f32(const float *a, const float *b, float *out, int64_t size);
int fc_relu_f64(const double *x, double *out, int64_t size);
int fc_relu_bwd_f64(const double *d_out, const double *out, double *d_x, int64_t size);
int fc_relu_bwd_add_f64(const double *d_out, const double *out, const double *other, double *d_x, int64_t size);
int fc_add_f64(const double *a, const double *b, double *out, int64_t size);
/* Planes cropped to their top-left rows x cols and back (csrc/elementwise.c):
 * dst (planes, rows, cols) <- src (planes, h, w)[:, :rows, :cols], and
 * dst (planes, h, w) <- src (planes, rows, cols) padded with zeros. */
int fc_crop_planes_f32(const float *src, float *dst, int64_t planes, int64_t h, int64_t w, int64_t rows,
                       int64_t cols);
int fc_pad_planes_f32(const float *src, float *dst, int64_t planes, int64_t h, int64_t w, int64_t rows,
                      int64_t cols);
int fc_crop_planes_f64(const double *src, double *dst, int64_t planes, int64_t h, int64_t w, int64_t rows,
                       int64_t cols);
int fc_pad_planes_f64(const double *src, double *dst, int64_t planes, int64_t h, int64_t w, int64_t rows,
                      int64_t cols);
/* The cache of large freed NumPy array buffers (csrc/array_cache.c):
 * NumPy's data-memory handler (a PyDataMem_Handler, version 1) and the name
 * its capsule must carry; blocks of min_size bytes or more are kept, limit
 * bytes in all (0: none).  clear frees every cached block and returns their
 * bytes; stats fills cached bytes, blocks, hits, misses. */
void *fc_array_cache_handler(void);
const char *fc_array_cache_capsule_name(void);
int fc_array_cache_configure(int64_t limit, int64_t min_size);
int64_t fc_array_cache_clear(void);
void fc_array_cache_stats(int64_t *out);
/* CDEF END */

#endif
