"""Count the L2 sectors and lines tc_f16_conv's cp.async loads touch, and compare with Nsight Compute.

The kernel (kernels/tc_f16_conv.cu, 128 threads) loads each K tile of 32 elements as 16-byte chunks:
thread ``t`` takes chunk ``t % 4`` of A row ``t // 4 + 32 i`` (an output pixel's receptive field) and
of filter row ``t // 4 + 32 i``; chunks in the padding, past M, past N or past the GEMM's K are
zero-filled and move nothing. ``read_counts`` replays those addresses for a whole call and counts, for
every load instruction, the distinct ``unit``-byte blocks among each ``group`` of consecutive threads:
``group=2, unit=32`` counts the sectors of every thread pair, ``group=4, unit=128`` the lines of every
row's K slice. It is pure numpy; run on the CPU::

    python validation/conv_l2_sectors.py validation/data/h100-sxm/ncu_conv_misses

which prints Nsight Compute's L2 read sectors and requests (the last of three launches of each shape)
over those counts, the read requests per row slice (one row's K slice of one load: four threads), and
the L2's busy time (``lts__throughput`` percent times the duration) per thousand requests and per
thousand sectors, reads and writes together. With ``--ratios [FOLDER]`` (default ncu_conv_parity/) it
prints instead Nsight Compute's L2 read sectors per sector of useful bytes beside the replay's and the
model's (``wavemodel.latency.channel_sector_ratios``) sector ratios of the A and filter loads, both together
(weighted by their useful bytes) and apart.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np

THREADS, TILE_K, CHUNK = 128, 32, 8          # threads per CTA, GEMM K per tile, fp16 elements per chunk
IN_BYTES = 2
WHOLE = 1 << 40                              # a ``unit`` no address reaches: counts groups that move bytes


def _distinct(ids: np.ndarray, group: int) -> int:
    """Sum over rows of ``group`` consecutive entries of the distinct non-negative values."""
    a = np.sort(ids.reshape(-1, group), axis=1)
    new = np.ones(a.shape, dtype=bool)
    new[:, 1:] = a[:, 1:] != a[:, :-1]
    return int(((a >= 0) & new).sum())


def read_counts(dims, tile_n: int, group: int, unit: int, tile_m: int = 128) -> tuple[int, int]:
    """Distinct ``unit``-byte blocks per ``group`` threads over the call's A and filter loads: (A, B).

    ``dims`` is ``(n, c, h, w, k, r, s, stride, padding)``. A tile's A loads repeat for every tile
    column and its filter loads for every tile row, so each is counted once and multiplied.
    """
    n, c, h, w, k, r, s, stride, pad = dims
    p, q = (h + 2 * pad - r) // stride + 1, (w + 2 * pad - s) // stride + 1
    m, kg = n * p * q, r * s * c
    tiles_m, tiles_n, k_tiles = -(-m // tile_m), -(-k // tile_n), -(-kg // TILE_K)
    tid = np.arange(THREADS)
    row0, chunk = tid // 4, tid % 4
    step = THREADS // 4
    count_a = count_b = 0
    for i in range(tile_m // step):
        rows = np.arange(tiles_m)[:, None] * tile_m + row0[None, :] + step * i
        in_m = rows < m
        mm = np.where(in_m, rows, 0)
        img, pq = mm // (p * q), mm % (p * q)
        h0, w0 = (pq // q) * stride - pad, (pq % q) * stride - pad
        for kt in range(k_tiles):
            kk = kt * TILE_K + chunk * CHUNK
            in_k = kk < kg
            tap, ch = np.where(in_k, kk, 0) // c, np.where(in_k, kk, 0) % c
            hh, ww = h0 + (tap // s)[None, :], w0 + (tap % s)[None, :]
            ok = in_m & in_k[None, :] & (hh >= 0) & (hh < h) & (ww >= 0) & (ww < w)
            byte = (((img * h + hh) * w + ww) * c + ch[None, :]) * IN_BYTES
            count_a += _distinct(np.where(ok, byte // unit, -1), group) * tiles_n
    for i in range(tile_n // step):
        rows = np.arange(tiles_n)[:, None] * tile_n + row0[None, :] + step * i
        for kt in range(k_tiles):
            kk = kt * TILE_K + chunk * CHUNK
            ok = (rows < k) & (kk < kg)[None, :]
            byte = (np.where(rows < k, rows, 0) * kg + kk[None, :]) * IN_BYTES
            count_b += _distinct(np.where(ok, byte // unit, -1), group) * tiles_m
    return count_a, count_b


def ncu_last_launches(path: Path, shapes: int, launches: int = 3) -> list[dict[str, float]]:
    """Metrics of the last of ``launches`` tc_f16_conv launches per shape from an ``ncu --csv`` log."""
    lines = [x for x in path.read_text().splitlines() if x.startswith('"')]
    by_id: dict[int, dict[str, float]] = {}
    for rec in csv.DictReader(io.StringIO("\n".join(lines))):
        if "tc_f16_conv" in rec["Kernel Name"]:
            by_id.setdefault(int(rec["ID"]), {})[rec["Metric Name"]] = float(
                rec["Metric Value"].replace(",", ""))
    ids = sorted(by_id)
    if len(ids) != shapes * launches:
        raise ValueError(f"{path}: {len(ids)} tc_f16_conv launches, expected {shapes} x {launches}")
    return [by_id[ids[launches * j + launches - 1]] for j in range(shapes)]


def channel_class(c: int) -> str:
    """How a K tile's 64-byte row slices sit on the L2's sectors: ``aligned`` (fp16 C % 32 == 0: one
    64-byte block), ``straddle`` (C % 32 == 16: 32-byte aligned, a quarter of them across a line) or
    ``off`` (C % 16 == 8: 16 bytes into a sector half the time)."""
    return "aligned" if c % 32 == 0 else "straddle" if c % 16 == 0 else "off"


def ncu_shapes(folder: Path):
    """Per shape of ``shapes_{64,128}.txt``, in order: ``(tile_n, spec, dims, metrics)``, the metrics of
    its last launch in ``conv_f16_128x{tile_n}.csv``."""
    for tile_n in (64, 128):
        shapes = (folder / f"shapes_{tile_n}.txt").read_text().split()
        for spec, met in zip(shapes, ncu_last_launches(folder / f"conv_f16_128x{tile_n}.csv", len(shapes)),
                             strict=True):
            yield tile_n, spec, tuple(int(v) for v in spec.split(",")), met


def ncu_table(folder: Path) -> list[dict]:
    """Per shape of ``shapes_{64,128}.txt``: the replayed counts against ``ncu``'s L2 counters."""
    out = []
    for tile_n, spec, dims, met in ncu_shapes(folder):
        reads = met["lts__t_sectors_srcunit_tex_op_read.sum"]
        requests = met["lts__t_requests_srcunit_tex_op_read.sum"]
        all_requests = requests + met["lts__t_requests_srcunit_tex_op_write.sum"]
        all_sectors = reads + met["lts__t_sectors_srcunit_tex_op_write.sum"]
        busy_pct = met["lts__throughput.avg.pct_of_peak_sustained_elapsed"]
        busy_ns = met["gpu__time_duration.sum"] * busy_pct / 100
        out.append(dict(
            kernel=f"conv_f16_128x{tile_n}", spec=spec, channels=channel_class(dims[1]),
            sectors_per_pair_rule=reads / sum(read_counts(dims, tile_n, group=2, unit=32)),
            requests_per_row_lines=requests / sum(read_counts(dims, tile_n, group=4, unit=128)),
            requests_per_row_slice=requests / sum(read_counts(dims, tile_n, group=4, unit=WHOLE)),
            read_hit=met["lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum"] / reads,
            busy_ns_per_k_requests=busy_ns / all_requests * 1e3,
            busy_ns_per_k_sectors=busy_ns / all_sectors * 1e3))
    return out


def _pairs_and_chunks(dims, tile_n: int) -> tuple[np.ndarray, np.ndarray]:
    """The call's (A, filter) sectors by the thread-pair rule and its (A, filter) 16-byte chunks."""
    pairs = np.array(read_counts(dims, tile_n, group=2, unit=32), dtype=float)
    return pairs, np.array(read_counts(dims, tile_n, group=1, unit=16), dtype=float)


def sector_ratios(dims, tile_n: int) -> tuple[float, float]:
    """Sectors per sector of useful bytes of the call's A and filter loads, by the thread-pair rule:
    what ``wavemodel.latency.channel_sector_ratios`` counts in closed form (without the padding)."""
    pairs, chunks = _pairs_and_chunks(dims, tile_n)
    return tuple(float(x) for x in pairs / (chunks / 2))


def ratio_table(folder: Path) -> list[dict]:
    """Per shape of ``shapes_{64,128}.txt``: Nsight Compute's L2 read sectors per sector of useful bytes,
    the replay's and the model's sector ratios (A, filter) and the L2 read requests per row slice."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from wavemodel.latency import channel_sector_ratios
    from wavemodel.shapes import Conv2d

    out = []
    for tile_n, spec, dims, met in ncu_shapes(folder):
        pairs, chunks = _pairs_and_chunks(dims, tile_n)
        replay = tuple(float(x) for x in pairs / (chunks / 2))
        model = channel_sector_ratios(Conv2d(*dims, dtype="fp16"), "fp16")
        both = lambda ratios, w=chunks: float(w @ np.array(ratios) / w.sum())  # noqa: E731
        out.append(dict(kernel=f"conv_f16_128x{tile_n}", spec=spec, channels=channel_class(dims[1]),
                        ncu_per_useful=met["lts__t_sectors_srcunit_tex_op_read.sum"] / (chunks.sum() / 2),
                        replay=replay, model=model, replay_both=both(replay), model_both=both(model),
                        requests_per_row_slice=met["lts__t_requests_srcunit_tex_op_read.sum"] / sum(
                            read_counts(dims, tile_n, group=4, unit=WHOLE))))
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["--ratios"]:
        folder = Path(argv[1]) if len(argv) > 1 else Path("validation/data/h100-sxm/ncu_conv_parity")
        print("kernel            shape (n,c,h,w,k,r,s,stride,pad)   channels  ncu  replay  model   "
              "replay A, B    model A, B    requests/row-slice")
        for t in ratio_table(folder):
            print(f"{t['kernel']:17s} {t['spec']:34s} {t['channels']:9s} {t['ncu_per_useful']:.3f} "
                  f"{t['replay_both']:.3f}  {t['model_both']:.3f}   {t['replay'][0]:.3f} {t['replay'][1]:.3f}"
                  f"   {t['model'][0]:.3f} {t['model'][1]:.3f}   {t['requests_per_row_slice']:18.2f}")
        return 0
    folder = Path(argv[0]) if argv else Path("validation/data/h100-sxm/ncu_conv_misses")
    print("kernel            shape (n,c,h,w,k,r,s,stride,pad)   channels  sectors/pair-rule  "
          "requests/row-lines  requests/row-slice  L2 hit  busy ns/k requests  busy ns/k sectors")
    for t in ncu_table(folder):
        print(f"{t['kernel']:17s} {t['spec']:34s} {t['channels']:9s} {t['sectors_per_pair_rule']:17.3f}"
              f" {t['requests_per_row_lines']:19.3f} {t['requests_per_row_slice']:19.2f} {t['read_hit']:7.2f}"
              f" {t['busy_ns_per_k_requests']:19.2f} {t['busy_ns_per_k_sectors']:18.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
