#!/usr/bin/env bash
# train_step_bench.sh — tokens/s of one BERT MLM training step (fwd + bwd +
# clip + AdamW): our C kernels (tests/bench/train_step.c) against PyTorch /
# transformers (train_step_torch.py) on the same config, batch, masking rate
# and thread count, plus our achieved GFLOP/s as a share of OpenBLAS sgemm
# peak measured in the same run.
#
#   tests/bench/train_step_bench.sh [BUILD_DIR] [--reference]
#
# BUILD_DIR defaults to build-bench (configured here as Release).  Configs:
#   mid:        hidden 256, 4 layers, 4 heads, inter 1024, vocab 8000, seq 128, batch 8
#   mid, all:   same, every position labelled (the MLM head then does the
#               same work as transformers, which always computes every logit)
#   --reference adds hidden 768, 6 layers, 12 heads, inter 3072, seq 128, batch 8
# THREADS (default 2) and STEPS (default 5) come from the environment.  On a
# machine shared with other jobs, OMP_WAIT_POLICY=passive keeps OpenMP
# threads from spinning against them (applies to both sides alike).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build-bench}
[ "${1:-}" = "--reference" ] && build=$src/build-bench
ref=0
for a in "$@"; do [ "$a" = "--reference" ] && ref=1; done
threads=${THREADS:-2}
steps=${STEPS:-5}
if [ ! -x "$build/train_step" ]; then
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j2 --target train_step >/dev/null
fi

run() {   # name, then common args
  local name=$1; shift
  echo "== $name: $* threads $threads"
  local ours torch
  ours=$("$build/train_step" "$@" --steps "$steps" --threads "$threads" 2>/dev/null)
  echo "$ours" | grep -v RESULT | sed 's/^/  ours:  /'
  torch=$(python3 "$src/tests/bench/train_step_torch.py" "$@" --steps "$steps" --threads "$threads" 2>/dev/null) || {
    echo "  torch: unavailable"; echo "$ours" | grep RESULT; return; }
  echo "$torch" | grep -v RESULT | sed 's/^/  torch: /'
  local o t
  o=$(echo "$ours" | sed -n 's/.*tokens_per_s=\([0-9.]*\).*/\1/p')
  t=$(echo "$torch" | sed -n 's/.*tokens_per_s=\([0-9.]*\).*/\1/p')
  echo "$ours" | grep RESULT | sed 's/^RESULT/  ours: /'
  echo "  torch: tokens_per_s=$t"
  awk -v o="$o" -v t="$t" 'BEGIN { printf "  ratio ours/torch: %.2fx\n", o / t }'
}

mid="--hidden 256 --layers 4 --heads 4 --inter 1024 --vocab 8000 --seq 128 --batch 8"
run "mid (15% masked)" $mid --mask 0.15
run "mid (all positions labelled)" $mid --mask 1
if [ $ref = 1 ]; then
  run "reference" --hidden 768 --layers 6 --heads 12 --inter 3072 --vocab 8000 --seq 128 --batch 8 --mask 0.15
fi
