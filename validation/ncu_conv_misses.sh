#!/usr/bin/env bash
# Nsight Compute counters for our convs at the shapes the model misses most (and neighbours that it
# predicts well), one ncu process per kernel; run on a GPU from the repo root with OUT set:
#   PYTHONPATH=. OUT=dir bash validation/ncu_conv_misses.sh
# S64 / S128 (space-separated n,c,h,w,k,r,s,stride,padding) replace the shapes of either kernel
# (ncu_conv_random/ was made with both set to its shapes_*.txt); EXTRA_METRICS adds counters.
set -e
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_requests_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_tex_op_write.sum,lts__t_requests_srcunit_tex_op_write.sum,lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed,l1tex__throughput.avg.pct_of_peak_sustained_elapsed,sm__ctas_launched.max,sm__cycles_active.max,smsp__warp_issue_stalled_long_scoreboard_per_warp_active.pct,smsp__warp_issue_stalled_barrier_per_warp_active.pct,smsp__warp_issue_stalled_lg_throttle_per_warp_active.pct,smsp__warp_issue_stalled_math_pipe_throttle_per_warp_active.pct,smsp__warp_issue_stalled_drain_per_warp_active.pct
M="$M${EXTRA_METRICS:+,$EXTRA_METRICS}"     # more counters, comma-separated, from the environment
S64="${S64:-64,120,112,112,64,1,1,1,0 2,400,112,112,576,3,3,2,1 32,496,56,56,112,3,3,2,1 16,48,112,112,64,3,3,1,1 32,24,56,56,296,3,3,2,1 32,128,28,28,256,3,3,1,1 32,128,28,28,296,3,3,1,1 32,128,28,28,320,3,3,1,1 32,128,28,28,384,3,3,1,1 64,472,14,14,272,3,3,2,1 64,152,14,14,1840,3,3,1,1 64,192,56,56,48,1,1,1,0 32,1024,14,14,512,1,1,1,0 16,32,112,112,8,1,1,1,0 64,232,28,28,8,1,1,1,0 32,256,28,28,512,3,3,1,1}"
S128="${S128:-32,64,56,56,232,3,3,1,1 32,64,56,56,240,3,3,1,1 32,64,56,56,248,3,3,1,1 32,64,56,56,256,3,3,1,1 16,184,112,112,72,3,3,2,1 1,120,112,112,1024,1,1,1,0 64,152,14,14,1840,3,3,1,1 64,192,56,56,48,1,1,1,0 16,32,112,112,8,1,1,1,0 64,120,112,112,64,1,1,1,0 32,256,28,28,512,3,3,1,1 32,128,28,28,296,3,3,1,1}"
for k in 64 128; do
  eval S=\$S$k
  echo "$S" > $OUT/shapes_$k.txt
  ncu --clock-control none --kernel-name tc_f16_conv --metrics $M --csv python3 validation/ncu_probe.py conv_f16_128x$k $S > $OUT/conv_f16_128x$k.csv 2> $OUT/err_$k.txt || tail -5 $OUT/err_$k.txt
done
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv > $OUT/smi.txt
wc -l $OUT/*.csv
