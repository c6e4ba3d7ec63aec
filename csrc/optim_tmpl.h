/* SGD for one element type (included through instantiate.h).
 *
 * One pass over a parameter instead of NumPy's five or six (each a Python
 * call): PyTorch's update, in place,
 *   g = grad + weight_decay * value
 *   v = momentum * v + g            (v = g on the first step)
 *   value -= lr * (g + momentum * v if nesterov else v)
 * Serial: the seed network's largest parameter has 205k elements, less than
 * an OpenMP wake-up is worth. */
int FN(fc_sgd_update)(REAL *restrict value, const REAL *restrict grad, REAL *restrict velocity,
                      int64_t n, double lr, double momentum, double weight_decay, int64_t nesterov,
                      int64_t first) {
    if (n < 0) return FC_ERR_SIZE;
    const REAL lr_ = (REAL)lr, m = (REAL)momentum, wd = (REAL)weight_decay;
    if (momentum == 0) {
        for (int64_t k = 0; k < n; ++k) value[k] -= lr_ * (grad[k] + wd * value[k]);
        return FC_OK;
    }
    for (int64_t k = 0; k < n; ++k) {
        const REAL g = grad[k] + wd * value[k];
        const REAL v = first ? g : m * velocity[k] + g;
        velocity[k] = v;
        value[k] -= lr_ * (nesterov ? g + m * v : v);
    }
    return FC_OK;
}
