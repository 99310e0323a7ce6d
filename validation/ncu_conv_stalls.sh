#!/usr/bin/env bash
# Nsight Compute's warp-state (stall) breakdown for our convs at shapes the model misses most and at
# neighbours it predicts well, one ncu process per kernel; run on a GPU from the repo root with OUT set:
#   PYTHONPATH=. OUT=dir bash validation/ncu_conv_stalls.sh
# Every stall reason is read as smsp__warp_issue_stalled_<reason>_per_warp_active.pct (the share of
# active warp cycles a warp spent stalled for it), beside issue activity, tensor-pipe activity,
# achieved occupancy, shared-memory bank conflicts and the L2 throughput.
set -e
R="barrier branch_resolving dispatch_stall drain imc_miss lg_throttle long_scoreboard math_pipe_throttle membar mio_throttle misc no_instruction not_selected selected short_scoreboard sleeping tex_throttle wait"
M=gpu__time_duration.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,sm__cycles_active.avg
for r in $R; do M=$M,smsp__warp_issue_stalled_${r}_per_warp_active.pct; done
S="2,400,112,112,576,3,3,2,1 64,120,112,112,64,1,1,1,0 32,24,7,7,1472,3,3,1,1 16,48,112,112,64,3,3,1,1 32,496,56,56,112,3,3,2,1 64,472,14,14,272,3,3,2,1 64,152,14,14,1840,3,3,1,1 32,8,112,112,448,3,3,1,1 32,256,28,28,512,3,3,1,1 32,128,28,28,256,3,3,1,1 64,48,112,112,272,1,1,1,0 8,408,28,28,368,3,3,1,1 16,72,112,112,184,3,3,1,1 64,360,28,28,448,3,3,2,1"
echo "$S" > $OUT/shapes.txt
for k in 64 128; do
  ncu --clock-control none --kernel-name tc_f16_conv --metrics $M --csv \
    python3 validation/ncu_probe.py conv_f16_128x$k $S > $OUT/conv_f16_128x$k.csv 2> $OUT/err_$k.txt || tail -5 $OUT/err_$k.txt
done
nvidia-smi --query-gpu=name,serial,clocks.sm,clocks.mem,temperature.gpu --format=csv > $OUT/smi.txt
wc -l $OUT/*.csv
