"""wavemodel: GEMM and convolution latency on NVIDIA GPUs from tiling, occupancy and waves."""

from .configs import KernelConfig
from .gpus import GPUSpec, gpu
from .latency import Prediction, predict_latency
from .networks import load_network
from .occupancy import occupancy
from .shapes import Conv2d, Gemm
from .sizing import size_transformer
from .solver import solve, solve_layer, solve_network

__all__ = ["Conv2d", "GPUSpec", "Gemm", "KernelConfig", "Prediction", "gpu", "load_network", "occupancy",
           "predict_latency", "size_transformer", "solve", "solve_layer", "solve_network"]
__version__ = "0.1.0"
