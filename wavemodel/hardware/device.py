"""Query the local CUDA device (through CuPy) and describe the environment for datasets' env.json."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import shlex
import subprocess
import sys

from ..gpus import GPUSpec, catalogue, match_device_name


def _cupy():
    try:
        import cupy
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise ValueError("gpu: 'local' needs CuPy (pip install 'wavemodel[gpu]') and an NVIDIA GPU") from e
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise ValueError("gpu: 'local' found no CUDA device on this machine")
    except cupy.cuda.runtime.CUDARuntimeError as e:
        raise ValueError(f"gpu: 'local' found no usable CUDA device ({e})") from None
    return cupy


def local_gpu_spec(device_id: int = 0) -> GPUSpec:
    """A GPUSpec built from what the device reports; chip rates from the catalogue entry it matches."""
    cupy = _cupy()
    props = cupy.cuda.runtime.getDeviceProperties(device_id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    key = match_device_name(name)
    base = catalogue().get(key)
    if base is None:
        raise ValueError(
            f"gpu: the local device {name!r} is not in the catalogue, so its peak rates are unknown; "
            f"known: {', '.join(sorted(catalogue()))}"
        )
    cc = f"{props['major']}.{props['minor']}"
    return GPUSpec(
        name=key, display_name=name, arch=f"sm_{props['major']}{props['minor']}", compute_capability=cc,
        sm_count=props["multiProcessorCount"],
        boost_clock_mhz=props.get("clockRate", base.boost_clock_mhz * 1000) / 1000,
        l2_bytes=props["l2CacheSize"], dram_bytes=props["totalGlobalMem"],
        dram_bandwidth_bytes_per_s=base.dram_bandwidth_bytes_per_s,
        peak_flops_per_s=dict(base.peak_flops_per_s),
        max_threads_per_sm=props["maxThreadsPerMultiProcessor"],
        max_warps_per_sm=props["maxThreadsPerMultiProcessor"] // props["warpSize"],
        max_blocks_per_sm=props.get("maxBlocksPerMultiProcessor", base.max_blocks_per_sm),
        max_threads_per_block=props["maxThreadsPerBlock"], regs_per_sm=props["regsPerMultiprocessor"],
        max_regs_per_block=props["regsPerBlock"], max_regs_per_thread=base.max_regs_per_thread,
        reg_alloc_unit_regs=base.reg_alloc_unit_regs, warp_schedulers_per_sm=base.warp_schedulers_per_sm,
        smem_per_sm_bytes=props["sharedMemPerMultiprocessor"],
        max_smem_per_block_bytes=props.get("sharedMemPerBlockOptin", base.max_smem_per_block_bytes),
        smem_reserved_per_block_bytes=props.get("reservedSharedMemPerBlock",
                                                base.smem_reserved_per_block_bytes),
        smem_alloc_unit_bytes=base.smem_alloc_unit_bytes, warp_size=props["warpSize"],
        aliases=(), source="local device", dram_read_fraction=base.dram_read_fraction,
    )


def _run(cmd: str) -> str:
    try:
        return subprocess.run(shlex.split(cmd), capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def environment(command: str | None = None, **extra) -> dict:
    """GPU, clocks, driver, CUDA and library versions, date and the producing command (for env.json)."""
    env = {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else " ".join(shlex.quote(a) for a in sys.argv),
        "python": sys.version.split()[0], "platform": platform.platform(),
    }
    smi = _run("nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,"
               "clocks.max.mem,power.limit,temperature.gpu,pstate --format=csv,noheader")
    if smi:
        keys = ["gpu_name", "driver", "clock_sm_mhz_now", "clock_sm_mhz_max", "clock_mem_mhz_now",
                "clock_mem_mhz_max", "power_limit", "temperature_c", "pstate"]
        env["nvidia_smi"] = dict(zip(keys, [s.strip() for s in smi.splitlines()[0].split(",")], strict=False))
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        env["gpu"] = {
            "name": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
            "sm_count": props["multiProcessorCount"], "l2_bytes": props["l2CacheSize"],
            "compute_capability": f"{props['major']}.{props['minor']}",
            "smem_per_sm_bytes": props["sharedMemPerMultiprocessor"],
            "smem_per_block_optin_bytes": props.get("sharedMemPerBlockOptin"),
            "smem_reserved_per_block_bytes": props.get("reservedSharedMemPerBlock"),
            "max_blocks_per_sm": props.get("maxBlocksPerMultiProcessor"),
            "regs_per_sm": props["regsPerMultiprocessor"], "clock_khz": props.get("clockRate"),
            "memory_clock_khz": props.get("memoryClockRate"), "memory_bus_bits": props.get("memoryBusWidth"),
        }
        env["cupy"] = cupy.__version__
        env["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        env["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
        try:
            from cupy_backends.cuda.libs import cublas

            env["cublas"] = cublas.getVersion(cupy.cuda.device.get_cublas_handle())
        except Exception as e:  # noqa: BLE001 - informative only
            env["cublas"] = f"unknown ({type(e).__name__})"
    except ImportError:
        env["cupy"] = None
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    except ImportError:
        env["torch"] = None
    env.update(extra)
    return env


def write_environment(path, command: str | None = None, **extra) -> dict:
    env = environment(command, **extra)
    with open(path, "w") as f:
        json.dump(env, f, indent=2, sort_keys=True)
        f.write("\n")
    return env
