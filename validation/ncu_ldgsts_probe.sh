#!/usr/bin/env bash
# Nsight Compute's per-instruction counters of our convs' cp.async (LDGSTS.BYPASS) gathers: global
# sectors, shared-memory write wavefronts and bank conflicts, over C, filter and stride, on both conv
# kernels. On a GPU, from the repo root:
#   PYTHONPATH=. OUT=dir bash validation/ncu_ldgsts_probe.sh [shapes file]
# The shapes file holds space-separated n,c,h,w,k,r,s,stride,padding (default: the committed
# validation/data/h100-sxm/ncu_ldgsts/shapes.txt). Every launch is profiled (validation/ncu_probe.py
# launches each shape three times; the last one counts). Writes conv_f16_128x64.csv,
# conv_f16_128x128.csv, smi.txt and smi_serial.txt under OUT.
set -e
SHAPES="${1:-validation/data/h100-sxm/ncu_ldgsts/shapes.txt}"
M=gpu__time_duration.sum,sm__sass_inst_executed_op_ldgsts_cache_bypass.sum,sm__sass_l1tex_t_sectors_pipe_lsu_mem_global_op_ldgsts_cache_bypass.sum,sm__sass_l1tex_data_pipe_lsu_wavefronts_mem_shared_op_ldgsts_cache_bypass.sum,sm__sass_l1tex_data_bank_conflicts_pipe_lsu_mem_shared_op_ldgsts_cache_bypass.sum,sm__sass_data_bytes_mem_global_op_ldgsts_cache_bypass.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_cmd_read.sum
nvidia-smi --query-gpu=name,serial,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/smi_serial.txt"
cp "$SHAPES" "$OUT/shapes.txt"
for k in 64 128; do
  ncu --clock-control none --kernel-name tc_f16_conv --metrics $M --csv \
    python3 validation/ncu_probe.py conv_f16_128x$k $(cat "$SHAPES") > "$OUT/conv_f16_128x$k.csv" 2> "$OUT/err_$k.txt" \
    || tail -5 "$OUT/err_$k.txt"
done
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/smi.txt"
wc -l "$OUT"/*.csv
