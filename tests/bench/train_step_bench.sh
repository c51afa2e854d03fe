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
# THREADS (default 2), STEPS (default 5) and ROUNDS (default 2: ours and
# torch alternate, so both see the same background load) come from the
# environment.  Reported: mean-step and best-step tokens/s of each side (the
# best step is the least disturbed by other jobs), and the ratios.  On a
# shared machine, OMP_WAIT_POLICY=passive keeps OpenMP threads from spinning
# against other jobs (it applies to both sides alike).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$src/build-bench
ref=0
for a in "$@"; do
  if [ "$a" = "--reference" ]; then ref=1; else build=$a; fi
done
threads=${THREADS:-2}
steps=${STEPS:-5}
rounds=${ROUNDS:-2}
if [ ! -x "$build/train_step" ]; then
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j2 --target train_step >/dev/null
fi

field() { sed -n "s/.*[ ]$1=\([0-9.]*\).*/\1/p" | tail -1; }
maxof() { awk 'BEGIN { m = 0 } { if ($1 > m) m = $1 } END { print m }'; }

run() {   # name, then the config arguments
  local name=$1; shift
  echo "== $name: $* threads $threads steps $steps rounds $rounds"
  local om="" ob="" tm="" tb="" out r
  for r in $(seq "$rounds"); do
    out=$("$build/train_step" "$@" --steps "$steps" --threads "$threads" 2>/dev/null)
    echo "$out" | grep -v RESULT | sed "s/^/  ours  [$r]: /"
    echo "$out" | grep RESULT | sed "s/^RESULT/  ours  [$r]:/"
    om="$om $(echo " $out" | grep RESULT | field tokens_per_s)"
    ob="$ob $(echo " $out" | grep RESULT | field best_tokens_per_s)"
    if out=$(python3 "$src/tests/bench/train_step_torch.py" "$@" --steps "$steps" --threads "$threads" 2>/dev/null); then
      echo "$out" | grep -v RESULT | sed "s/^/  torch [$r]: /"
      tm="$tm $(echo " $out" | grep RESULT | field tokens_per_s)"
      tb="$tb $(echo " $out" | grep RESULT | field best_tokens_per_s)"
    else
      echo "  torch [$r]: unavailable"
    fi
  done
  [ -n "$tm" ] || return 0
  local a b c d
  a=$(echo $om | tr ' ' '\n' | maxof); b=$(echo $ob | tr ' ' '\n' | maxof)
  c=$(echo $tm | tr ' ' '\n' | maxof); d=$(echo $tb | tr ' ' '\n' | maxof)
  echo "  tokens/s (best round): ours mean-step $a best-step $b | torch mean-step $c best-step $d"
  awk -v a="$a" -v b="$b" -v c="$c" -v d="$d" \
    'BEGIN { printf "  ratio ours/torch: mean-step %.2fx, best-step %.2fx\n", a / c, b / d }'
}

mid="--hidden 256 --layers 4 --heads 4 --inter 1024 --vocab 8000 --seq 128 --batch 8"
run "mid (15% masked)" $mid --mask 0.15
run "mid (all positions labelled)" $mid --mask 1
if [ $ref = 1 ]; then
  run "reference" --hidden 768 --layers 6 --heads 12 --inter 3072 --vocab 8000 --seq 128 --batch 8 --mask 0.15
fi
