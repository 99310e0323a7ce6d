"""Device calls of one measured shape, and the runner that names and times them.

Shared by ``wavemodel calibrate --measure`` (``calibration_sweep``) and the validation sweeps
(``validation/sweep_gpu.py``): a *job* is any object with ``kind`` ("gemm" | "conv"), ``backend``
("own" | "cublas" | "cudnn"), ``kernel`` (our kernel's name for "own"), ``dtype`` and ``shape_dict``
(``batch, m, n, k`` or ``n, c, h, w, k, r, s, stride, padding``).

Library calls go through torch (cuBLAS: torch.mm / torch.bmm / torch._scaled_mm for fp8, TF32 on only
for dtype tf32; cuDNN: torch.nn.functional.conv2d on channels_last tensors with cudnn.benchmark=True)
and are timed in torch CUDA graphs; our kernels are CuPy RawKernels timed in CuPy graphs. Each row's
inputs are rotated over enough sets that the working set exceeds ``rotation_factor`` x L2. torch and
CuPy are imported inside functions only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ..latency import dram_bytes
from ..shapes import Conv2d
from .kernels import conv_output_hw
from .timing import rotation_count, time_device

ALIGN_BYTES = 512          # every rotated set starts on this boundary, as a fresh allocation would
PLACEMENT_SPAN_BYTES = 64 << 20   # with ``Runner.placement``: a buffer starts up to this far into its block
WARM_CALLS = 2             # eager calls before the profiler pass (cuDNN autotunes on the first)
OUT_BYTES = {"fp16": 2, "bf16": 2, "fp8": 2, "tf32": 4, "fp32": 4}
IN_BYTES = {"fp16": 2, "bf16": 2, "fp8": 1, "tf32": 4, "fp32": 4}


def conv_touched_bytes(d: dict) -> int:
    """Bytes one fp16 NHWC convolution call touches: the input pixels its filter windows cover (a 1x1
    stride-2 conv reads a quarter of its input), the filters and the output: ``latency.dram_bytes``,
    the model's compulsory traffic. Its inputs are rotated until this many bytes per set exceed the
    rotation target (sizing by the whole input left strided convs' working sets inside the L2)."""
    shape = Conv2d(n=d["n"], c=d["c"], h=d["h"], w=d["w"], k=d["k"], r=d["r"], s=d["s"], stride=d["stride"],
                   padding=d["padding"], dtype="fp16")
    return int(math.ceil(float(dram_bytes(shape))))


@dataclass
class Call:
    launch: Callable[[int], object]       # launch(i) enqueues call i on the current stream (set i % sets)
    sets: int
    framework: str                        # "torch" | "cupy"
    setup: Callable[[], object] = lambda: None
    keep: list = field(default_factory=list)


# shapes the correctness check runs on before a kernel's first timed row: odd and aligned ones
CHECK_GEMMS = ((333, 264, 520, 1), (256, 256, 256, 1), (1, 8, 4104, 1), (200, 136, 72, 3))
CHECK_GEMMS_ANY = ((333, 257, 129, 1), (1, 3, 4099, 1))           # for kernels with no alignment rule
CHECK_CONVS = ((2, 64, 14, 14, 72, 3, 3, 1, 1), (3, 32, 15, 15, 64, 1, 1, 2, 0), (1, 8, 7, 9, 8, 3, 3, 2, 1))


class KernelCheckFailed(Exception):  # noqa: N818 - a result, raised from build()
    """One of our kernels failed its correctness check: its rows are not measured in this process."""


def conv_out(d: dict) -> tuple[int, int]:
    """Output height and width (P, Q) of a conv shape dict."""
    return conv_output_hw(d["h"], d["w"], d["r"], d["s"], d["stride"], d["padding"])


def own_registry() -> dict:
    """Our kernels by name (wavemodel.hardware.kernels.KERNELS)."""
    from . import kernels

    reg = kernels.registry() if hasattr(kernels, "registry") else kernels.KERNELS
    if isinstance(reg, dict):
        return dict(reg)
    return {getattr(e, "name", None) or e.config.name: e for e in reg}


def own_configs() -> dict:
    """KernelConfig per own kernel: from the registry if it loads here, else from the catalogue."""
    try:
        return {name: e.config for name, e in own_registry().items()}
    except Exception:  # noqa: BLE001 - no CuPy / no GPU / registry not there yet: use the catalogue
        from ..configs import own_kernels

        return own_kernels()


def _passed(result) -> bool:
    if result is None:
        return True
    if isinstance(result, bool):
        return result
    for attr in ("ok", "passed"):
        if hasattr(result, attr):
            return bool(getattr(result, attr))
    if isinstance(result, list | tuple) and result:
        return all(_passed(r) for r in result)
    return True


class Runner:
    """Measures jobs (see ``measure``); keeps the backends, the L2 size and which kernels passed."""

    def __init__(self, budget_s: float = 0.02, rotation_factor: float = 2.0, max_sets: int = 256,
                 log: Callable[[str], None] | None = None):
        import sys

        self.budget_s, self.factor, self.max_sets = budget_s, rotation_factor, max_sets
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self._torch = self._cupy = None
        self._backends: dict = {}
        self._registry: dict | None = None
        self.checked: dict[str, str] = {}       # kernel name -> "" (passed) or the failure
        self.l2_bytes = self._l2_bytes()
        # a random.Random, or None: each input and output buffer then starts at a random multiple of
        # ALIGN_BYTES below PLACEMENT_SPAN_BYTES into a larger allocation, so that timings of one shape
        # in several windows see different placements of its data in memory (validation/order_probe.py)
        self.placement = None

    # -- frameworks -------------------------------------------------------------------------------
    @property
    def torch(self):
        if self._torch is None:
            import torch

            torch.backends.cudnn.benchmark = True
            self._torch = torch
        return self._torch

    @property
    def cupy(self):
        if self._cupy is None:
            import cupy

            self._cupy = cupy
        return self._cupy

    def backend(self, framework: str):
        if framework not in self._backends:
            from .timing import make_backend

            self._backends[framework] = make_backend(framework)
        return self._backends[framework]

    def _l2_bytes(self) -> int:
        try:
            return int(self.torch.cuda.get_device_properties(0).L2_cache_size)
        except Exception:  # noqa: BLE001
            try:
                return int(self.cupy.cuda.runtime.getDeviceProperties(0)["l2CacheSize"])
            except Exception:  # noqa: BLE001
                return 50 * 2**20

    def environment(self, command: str) -> dict:
        from . import timing
        from .device import environment

        return environment(command, l2_bytes_used_for_rotation=self.l2_bytes, harness={
            "target_replay_s": timing.TARGET_REPLAY_S, "min_launches": timing.MIN_LAUNCHES,
            "max_launches": timing.MAX_LAUNCHES, "min_reps": timing.MIN_REPS, "max_reps": timing.MAX_REPS,
            "budget_s": self.budget_s, "rotation_factor": self.factor, "max_sets": self.max_sets})

    @property
    def registry(self) -> dict:
        if self._registry is None:
            self._registry = own_registry()
        return self._registry

    # -- inputs -----------------------------------------------------------------------------------
    def _sets(self, per_set_bytes: int) -> int:
        return rotation_count(per_set_bytes, self.l2_bytes, self.factor, self.max_sets)

    def _layout(self, sets: int, shape: Sequence[int], elem_bytes: int) -> tuple[int, int, int]:
        """(elements to allocate, first set's start, stride between sets), in elements."""
        numel = math.prod(shape)
        align = max(1, ALIGN_BYTES // elem_bytes)
        stride = -(-numel // align) * align
        start = 0 if self.placement is None else \
            self.placement.randrange(0, PLACEMENT_SPAN_BYTES // elem_bytes, align)
        return start + sets * stride, start, stride

    def _torch_sets(self, sets: int, shape: Sequence[int], dtype: str, fill: bool = True) -> list:
        torch = self.torch
        tdt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32, "tf32": torch.float32,
               "fp8": torch.float8_e4m3fn}[dtype]
        total, start, stride = self._layout(sets, shape, IN_BYTES.get(dtype, 2))
        if not fill:
            buf = torch.empty(total, device="cuda", dtype=tdt)
        elif dtype == "fp8":
            buf = torch.randn(total, device="cuda", dtype=torch.float16).to(tdt)
        else:
            buf = torch.randn(total, device="cuda", dtype=tdt)
        numel = math.prod(shape)
        return [buf[start + i * stride:start + i * stride + numel].view(*shape) for i in range(sets)]

    def _cupy_sets(self, sets: int, shape: Sequence[int], dtype: str, fill: bool = True) -> list:
        cp = self.cupy
        cdt = {"fp16": cp.float16, "fp32": cp.float32}[dtype]
        total, start, stride = self._layout(sets, shape, IN_BYTES[dtype])
        if fill:
            buf = cp.random.standard_normal(total, dtype=cp.float32).astype(cdt)
        else:
            buf = cp.empty(total, dtype=cdt)
        numel = math.prod(shape)
        return [buf[start + i * stride:start + i * stride + numel].reshape(shape) for i in range(sets)]

    # -- calls ------------------------------------------------------------------------------------
    def build(self, job) -> Call:
        if job.backend == "own":
            return self._own_call(job)
        if job.kind == "gemm":
            return self._cublas_call(job)
        return self._cudnn_call(job)

    def _cublas_call(self, job) -> Call:
        torch = self.torch
        d = job.shape_dict
        b, m, n, k, dt = d["batch"], d["m"], d["n"], d["k"], job.dtype
        sets = self._sets(b * ((m * k + k * n) * IN_BYTES[dt] + m * n * OUT_BYTES[dt]))
        mm = torch.backends.cuda.matmul

        def setup():
            mm.allow_tf32 = dt == "tf32"

        if dt == "fp8":
            if b != 1:
                raise ValueError("fp8: batched GEMMs are not swept")
            a, bt = self._torch_sets(sets, (m, k), dt), self._torch_sets(sets, (n, k), dt)
            one = torch.ones((), device="cuda", dtype=torch.float32)

            def launch(i):
                j = i % sets
                return torch._scaled_mm(a[j], bt[j].t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
            return Call(launch, sets, "torch", setup, [a, bt, one])
        shape_a, shape_b, shape_c = ((m, k), (k, n), (m, n)) if b == 1 else ((b, m, k), (b, k, n), (b, m, n))
        a, bb = self._torch_sets(sets, shape_a, dt), self._torch_sets(sets, shape_b, dt)
        c = self._torch_sets(sets, shape_c, dt, fill=False)
        op = torch.mm if b == 1 else torch.bmm

        def launch(i):
            j = i % sets
            return op(a[j], bb[j], out=c[j])
        return Call(launch, sets, "torch", setup, [a, bb, c])

    def _cudnn_call(self, job) -> Call:
        torch = self.torch
        d = job.shape_dict
        sets = self._sets(conv_touched_bytes(d))
        x = [t.permute(0, 3, 1, 2) for t in self._torch_sets(sets, (d["n"], d["h"], d["w"], d["c"]), "fp16")]
        w = [t.permute(0, 3, 1, 2) for t in self._torch_sets(sets, (d["k"], d["r"], d["s"], d["c"]), "fp16")]
        conv2d, st, pad = torch.nn.functional.conv2d, d["stride"], d["padding"]

        def setup():
            torch.backends.cudnn.benchmark = True

        def launch(i):
            j = i % sets
            return conv2d(x[j], w[j], stride=st, padding=pad)
        return Call(launch, sets, "torch", setup, [x, w])

    def _check_own(self, name: str, entry, kind: str) -> None:
        """Check the kernel against cuBLAS / im2col once (odd and aligned shapes); KernelCheckFailed if it
        fails."""
        if name not in self.checked:
            from . import correctness

            try:
                if kind == "conv":
                    results = [correctness.check_conv(name, *s) for s in CHECK_CONVS]
                else:
                    shapes = CHECK_GEMMS + (CHECK_GEMMS_ANY if getattr(entry, "alignment_elements", 1) == 1
                                            else ())
                    results = [correctness.check_gemm(name, m, n, k, batch) for m, n, k, batch in shapes]
                bad = [str(r) for r in results if not _passed(r)]
                self.checked[name] = "; ".join(bad)
            except Exception as e:  # noqa: BLE001 - a failing check is a result
                self.checked[name] = f"correctness check failed: {type(e).__name__}: {e}"[:300]
            self.log(f"  correctness {name}: {self.checked[name] or 'passed'}")
        if self.checked[name]:
            raise KernelCheckFailed(f"{name}: {self.checked[name]}")

    def _own_call(self, job) -> Call:
        entry = self.registry[job.kernel]
        self._check_own(job.kernel, entry, job.kind)
        d, dt = job.shape_dict, job.dtype
        if job.kind == "gemm":
            m, n, k = d["m"], d["n"], d["k"]
            sets = self._sets((m * k + k * n + m * n) * IN_BYTES[dt])
            a, b = self._cupy_sets(sets, (m, k), dt), self._cupy_sets(sets, (k, n), dt)
            c = self._cupy_sets(sets, (m, n), dt, fill=False)

            def launch(i):
                j = i % sets
                return entry.launch(a[j], b[j], c[j])
            return Call(launch, sets, "cupy", keep=[a, b, c])
        p, q = conv_out(d)
        sets = self._sets(conv_touched_bytes(d))
        x = self._cupy_sets(sets, (d["n"], d["h"], d["w"], d["c"]), "fp16")
        w = self._cupy_sets(sets, (d["k"], d["r"], d["s"], d["c"]), "fp16")
        y = self._cupy_sets(sets, (d["n"], p, q, d["k"]), "fp16", fill=False)
        st, pad = d["stride"], d["padding"]

        def launch(i):
            j = i % sets
            return entry.launch_conv(x[j], w[j], y[j], st, pad)
        return Call(launch, sets, "cupy", keep=[x, w, y])

    # -- kernel names -----------------------------------------------------------------------------
    @staticmethod
    def warm(call: Call) -> None:
        """Eager calls before profiling and timing (cuDNN autotunes on the first)."""
        call.setup()
        for i in range(WARM_CALLS):
            call.launch(i)

    def kernel_names(self, calls: Sequence[Call], warm: bool = True) -> list:
        """Profiler kernel names of one call each; None where they could not be read."""
        from .profiler import profile_calls

        if not calls:
            return []
        if warm:
            for c in calls:
                self.warm(c)
        fns = [(lambda c=c: c.launch(0)) for c in calls]
        setups = [c.setup for c in calls]
        try:
            return profile_calls(fns, setup=setups)
        except ValueError as e:
            self.log(f"  profiler: {e}; profiling the calls one by one")
        out = []
        for f, s in zip(fns, setups, strict=True):
            try:
                out += profile_calls([f], setup=[s])
            except ValueError:
                out.append(None)
        return out

    # -- rows -------------------------------------------------------------------------------------
    def time_call(self, call: Call) -> dict:
        call.setup()
        t = time_device(call.launch, budget_s=self.budget_s, warmup=WARM_CALLS, rotate=call.sets,
                        framework=call.framework, backend=self.backend(call.framework))
        return {"latency_us_median": t.median_s * 1e6, "latency_us_p10": t.p10_s * 1e6,
                "latency_us_p90": t.p90_s * 1e6, "reps": t.reps, "host_overhead_us": t.host_overhead_s * 1e6,
                "launches_per_graph": t.launches_per_graph, "rotation_sets": call.sets}

    def measure(self, jobs: Sequence) -> Iterator[tuple[object, dict | BaseException]]:
        """Build the chunk's calls, read the library calls' kernel names in one profiler pass, then
        time each call; yields (job, result) or (job, exception) per job."""
        built: list = []
        for j in jobs:
            try:
                c = self.build(j)
                if j.backend != "own":
                    self.warm(c)
                built.append(c)
            except Exception as e:  # noqa: BLE001 - recorded per row
                built.append(e)
        lib = [i for i, (j, c) in enumerate(zip(jobs, built, strict=True))
               if j.backend != "own" and isinstance(c, Call)]
        names: dict = {}
        try:
            for i, ck in zip(lib, self.kernel_names([built[i] for i in lib], warm=False), strict=True):
                names[i] = ck
        except Exception as e:  # noqa: BLE001 - a failed profiler pass leaves names empty
            self.log(f"  profiler pass failed: {type(e).__name__}: {e}")
        for i, job in enumerate(jobs):
            c, built[i] = built[i], None
            if isinstance(c, BaseException):
                yield job, c
                continue
            try:
                result = self.time_call(c)
            except Exception as e:  # noqa: BLE001
                yield job, e
                continue
            finally:
                del c
            ck = names.get(i)
            if ck is not None:
                result["kernel"] = ck.kernel
                result["kernel_us_cupti"] = ck.kernel_us_median
                result["kernel_launch"] = ";".join(ck.launches)
            yield job, result
