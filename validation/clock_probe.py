"""Does the SM clock explain our tensor-core kernels' run-to-run spread? Times a set of rows several
times in a row (the sweep's harness, CUDA-graph replays) and reads the SM clock and power through
NVML right before and after each timing.

    PYTHONPATH=. python validation/clock_probe.py --out DIR [--repeats 4]

Writes DIR/clock_probe.csv: kernel, m, n, k, repeat, latency_us_median, sm_mhz_before, sm_mhz_after,
power_w_before, power_w_after, temperature_c.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wavemodel.hardware import calibration_sweep as S  # noqa: E402
from wavemodel.hardware.calls import Runner  # noqa: E402

# rows whose two passes differed by 6-22 % in the committed H100 data, and steady ones beside them
ROWS = [("tc_f16_128x128", 3584, 5376, 1024), ("tc_f16_128x128", 7040, 2176, 1024),
        ("tc_f16_128x128", 7040, 3008, 1024), ("tc_f16_128x256", 3584, 5888, 1024),
        ("tc_f16_256x128", 6656, 2688, 1024), ("tc_f16_128x128", 896, 5376, 1024),
        ("tc_f16_128x256", 4096, 4096, 4096), ("simt_f32_128x128", 4096, 4096, 1024)]


def nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)

        def read():
            return (pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                    pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0,
                    pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))
        return read
    except Exception as e:  # noqa: BLE001
        print(f"no NVML ({e}); clocks left empty", file=sys.stderr)
        return lambda: (float("nan"), float("nan"), float("nan"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--pause-s", type=float, default=0.5, help="idle between timings (the sweep idles too)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    read = nvml()
    runner = Runner()
    jobs = [S.gemm("probe", "fp32" if k.startswith("simt") else "fp16", m, n, kk, backend="own", kernel=k)
            for k, m, n, kk in ROWS]
    with open(out / "clock_probe.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kernel", "m", "n", "k", "repeat", "latency_us_median", "sm_mhz_before", "sm_mhz_after",
                    "power_w_before", "power_w_after", "temperature_c"])
        for rep in range(args.repeats):
            for job in jobs:
                call = runner.build(job)
                runner.warm(call)
                time.sleep(args.pause_s)
                c0, p0, _ = read()
                t = runner.time_call(call)
                c1, p1, temp = read()
                row = [job.kernel, *job.shape[1:], rep, f"{t['latency_us_median']:.3f}", c0, c1, p0, p1, temp]
                w.writerow(row)
                f.flush()
                print(*row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
