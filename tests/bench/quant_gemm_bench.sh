#!/usr/bin/env bash
# quant_gemm_bench.sh — int8 / 4-bit GEMM GOP/s of kernels/quant against the
# integer peak of this CPU and Debian oneDNN, in one run, 1 and 2 threads.
#   tests/bench/quant_gemm_bench.sh [build-dir] [seconds-per-point]
# Needs a Release build; oneDNN is measured when libdnnl-dev was present at
# configure time (.ci/setup installs it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
secs=${2:-0.5}
bin=$build/quant_gemm_bench
[ -x "$bin" ] || { echo "quant_gemm_bench.sh: $bin not built (cmake --build $build)" >&2; exit 1; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
export OMP_WAIT_POLICY=passive OMP_PROC_BIND=false
for t in 1 2; do
  OMP_NUM_THREADS=$t "$bin" "$t" "$secs"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
