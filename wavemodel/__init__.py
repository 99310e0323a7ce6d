"""wavemodel: GEMM and convolution latency on NVIDIA GPUs from tiling, occupancy and waves."""

from .configs import KernelConfig
from .gpus import GPUSpec, gpu
from .latency import Prediction, predict_latency
from .occupancy import occupancy
from .shapes import Conv2d, Gemm

__all__ = ["Conv2d", "GPUSpec", "Gemm", "KernelConfig", "Prediction", "gpu", "occupancy", "predict_latency"]
__version__ = "0.1.0"
