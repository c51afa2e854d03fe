#!/usr/bin/env bash
# bpe_bench.sh — tokenizer benchmarks on the whole shared legal corpus
# (laws + extra, cleaned by clean_legal.py), vocab 8000, same thread count:
#   1. bpe training: ours (tok_tool train) vs HuggingFace tokenizers
#      BpeTrainer (same Split pre-tokenizer, forced terms as special tokens,
#      limit_alphabet = our alphabet, max_token_length 16) vs SentencePiece
#      BPE (character_coverage 0.9995, forced terms as user symbols); peak
#      memory of ours;
#   2. encode throughput (MB/s) of the same text with the same vocabulary:
#      ours (tok_encode_lines) vs tokenizers encode_batch, 1 and 2 threads.
# Every figure is given as wall time and as CPU time (user+sys, from
# /usr/bin/time): on a shared, loaded machine the CPU figures are the fair
# comparison.  Python start-up and file reading are outside the timed parts
# of the wall figures but inside the CPU figures of the Python tools.
# Usage: tests/bench/bpe_bench.sh [BUILD_DIR] [THREADS]   (release build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-$src/build}
threads=${2:-2}
data=${FLOW_DATA:-$src/../shared/data}/legal
tool=$build/tok_tool
work=$(mktemp -d "${TMPDIR:-/tmp}/flow-bpe-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT
[ -x "$tool" ] || { echo "build tok_tool first ($tool)"; exit 2; }
timed() {  # timed NAME CMD...: stdout of CMD to $work/NAME.out, times to $work/NAME.time
    local name=$1; shift
    /usr/bin/time -f "%e %U %S %M" -o "$work/$name.time" "$@" > "$work/$name.out"
}
cpu() { awk '{printf "%.2f", $2 + $3}' "$work/$1.time"; }
ratio() { python3 -c "print(f'{$1/$2:.3f}')"; }

python3 "$here/clean_legal.py" "$work/all.txt" "$data/laws" "$data/extra"
echo "corpus: $(du -h "$work/all.txt" | cut -f1) cleaned text, $(wc -l < "$work/all.txt") units, $threads threads, load: $(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$work/ours" "$work/hf" "$work/spm"
timed ours "$tool" train "$work/ours" --vocab 8000 --threads "$threads" \
    --terms "$data/terms.txt" "$work/all.txt" 2> "$work/ours.err"
ours=$(cat "$work/ours.out")
alpha=$(sed -n 's/.*alphabet \([0-9]*\) of.*/\1/p' "$work/ours.err")
grep trained "$work/ours.err"
echo "ours: train ${ours}s wall, $(cpu ours)s cpu, peak RSS $(( $(cut -d' ' -f4 "$work/ours.time") / 1024 )) MB"

RAYON_NUM_THREADS=$threads timed hf python3 "$here/bpe_bench.py" hf-train "$work/all.txt" \
    "$data/terms.txt" 8000 "$alpha" "$work/hf"
hf=$(cat "$work/hf.out")
echo "hf:   train ${hf}s wall, $(cpu hf)s cpu  -> ours/hf wall $(ratio "$ours" "$hf"), cpu $(ratio "$(cpu ours)" "$(cpu hf)")"
if python3 -c "import sentencepiece" 2>/dev/null; then
    timed spm python3 "$here/bpe_bench.py" spm-train "$work/all.txt" "$data/terms.txt" 8000 \
        "$threads" "$work/spm" 2> /dev/null
    spm=$(cat "$work/spm.out")
    echo "spm:  train ${spm}s wall, $(cpu spm)s cpu -> ours/spm wall $(ratio "$ours" "$spm"), cpu $(ratio "$(cpu ours)" "$(cpu spm)")"
fi

mb=$(python3 -c "import os; print(os.path.getsize('$work/all.txt') / 1e6)")
for th in 1 2; do
    timed oe$th "$tool" encode "$work/ours/tokenizer.bin" "$work/all.txt" --threads $th \
        --max-len 1000000000 --bench 2> /dev/null
    RAYON_NUM_THREADS=$th TOKENIZERS_PARALLELISM=true timed he$th python3 "$here/bpe_bench.py" \
        hf-encode "$work/ours/tokenizer.json" "$work/all.txt"
    read -r ot omb _ _ < "$work/oe$th.out"
    read -r ht hmb _ _ < "$work/he$th.out"
    echo "encode $th thread(s): ours ${omb} MB/s wall (${ot}s), hf ${hmb} MB/s wall (${ht}s) -> $(ratio "$omb" "$hmb")x;" \
         "cpu: ours $(cpu oe$th)s, hf $(cpu he$th)s (incl. start-up and reading)"
done
