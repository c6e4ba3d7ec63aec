"""fastconv: the from-scratch NumPy CNN, with compiled multithreaded kernels.

Backends: "numpy" (reference), "numba" (@njit(parallel=True)) and "c"
(cffi + OpenMP).  See README.md.
"""
import os as _os

# libgomp's idle threads spin for ~300000 `pause`s (~5 ms) after a kernel by
# default and take the cores BLAS needs for the next GEMM (61 ms -> 22 ms per
# step of the seed network once they slept at once); sleeping at once costs
# a ~0.1 ms wake-up per parallel region instead, ~60 of them per ResNet step.
# A short spin keeps back-to-back kernels' threads awake and still frees the
# cores within a fraction of a millisecond (_threads.OPENMP_SPIN_COUNT).
# Must be set before libgomp loads.  True when this import set it (a child
# process that should run with the user's own environment, the PyTorch side
# of the benchmarks, drops it again).
_omp_policy_set = "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ
if _omp_policy_set:
    from ._threads import OPENMP_SPIN_COUNT as _spin_count, openmp_already_loaded as _openmp_already_loaded

    if _openmp_already_loaded():
        import warnings as _warnings

        _warnings.warn(
            f"libgomp was loaded before fastconv (by `import torch`, say), so GOMP_SPINCOUNT={_spin_count} "
            "comes too late: its threads busy-wait ~5 ms after each kernel and a training step runs up to "
            f"~3x slower. Import fastconv first, or set GOMP_SPINCOUNT={_spin_count} in the environment.",
            RuntimeWarning,
            stacklevel=2,
        )
    _os.environ["GOMP_SPINCOUNT"] = _spin_count

from ._threads import get_num_threads, set_num_threads  # noqa: E402
from ._blas_tuning import tune_openblas as _tune_openblas  # noqa: E402
from ._malloc_tuning import tune_malloc as _tune_malloc  # noqa: E402

try:  # activation buffers reused from the heap instead of fresh zeroed pages every step
    _tune_malloc()
except Exception:  # pragma: no cover - a tuning, never a reason to fail an import
    pass

try:  # OpenBLAS threads that poll after each call would sit on the kernels' cores
    _tune_openblas()
except Exception:  # pragma: no cover - a tuning, never a reason to fail an import
    pass
from .backends import (
    BACKEND_NAMES,
    BackendUnavailableError,
    available_backends,
    get_backend,
    set_backend,
    use_backend,
)
from . import architectures, augment, datasets, functional, signal
from ._random import seed
from .functional import col2im, im2col
from .gradcheck import gradcheck
from .layers import (
    AdaptiveAvgPool2D,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Bottleneck,
    Concat,
    Conv2D,
    Dense,
    DenseBlock,
    DepthwiseSeparableConv,
    Dropout,
    Dropout2D,
    Flatten,
    GlobalAvgPool2D,
    Layer,
    LeakyReLU,
    MBConv,
    MaxPool2D,
    Normalize,
    ReLU,
    ReLU6,
    Residual,
    ResidualBlock,
    SEBasicBlock,
    SEBlock,
    Sigmoid,
    Softmax,
)
from .losses import SoftmaxCrossEntropy
from .model import CNN, Sequential, load_model
from .optim import SGD, Adam, AdamW, CosineAnnealingLR, OneCycleLR, StepLR

__version__ = "0.1.0"

from . import _array_cache  # noqa: E402
from ._array_cache import cache_info, empty_cache  # noqa: E402

# activations of 32 MB and more reused instead of fresh zeroed pages every step
# (a bad $FASTCONV_ARRAY_CACHE_MB raises here, naming the variable)
_array_cache.install()

__all__ = [
    "CNN", "Sequential", "load_model", "Layer", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
    "AdaptiveAvgPool2D", "Normalize", "BatchNorm2D", "BatchNorm1D", "Dense", "Flatten", "ReLU", "LeakyReLU", "Sigmoid",
    "Softmax", "Dropout", "Dropout2D", "ResidualBlock", "Bottleneck", "SEBlock", "DepthwiseSeparableConv",
    "Residual", "Concat", "ReLU6", "SEBasicBlock", "MBConv", "DenseBlock",
    "SoftmaxCrossEntropy", "SGD", "Adam", "AdamW", "StepLR", "CosineAnnealingLR", "OneCycleLR",
    "gradcheck", "seed", "functional", "signal", "architectures", "augment", "datasets",
    "BACKEND_NAMES",
    "BackendUnavailableError",
    "available_backends",
    "cache_info",
    "col2im",
    "empty_cache",
    "get_backend",
    "get_num_threads",
    "im2col",
    "set_backend",
    "set_num_threads",
    "use_backend",
]
