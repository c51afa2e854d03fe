#!/usr/bin/env bash
# bpe_bench.sh — tokenizer benchmarks on the whole shared legal corpus
# (laws + extra, cleaned by clean_legal.py), vocab 8000, same thread count:
#   1. bpe training time: ours (tok_tool train) vs HuggingFace tokenizers
#      BpeTrainer (same Split pre-tokenizer, forced terms as special tokens,
#      limit_alphabet = our alphabet) vs SentencePiece BPE; peak memory of
#      ours (/usr/bin/time -v);
#   2. encode throughput (MB/s) of the same text with the same vocabulary:
#      ours (tok_encode_lines) vs tokenizers encode_batch, 1 and 2 threads.
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

python3 "$here/clean_legal.py" "$work/all.txt" "$data/laws" "$data/extra"
echo "corpus: $(du -h "$work/all.txt" | cut -f1) cleaned text, $(wc -l < "$work/all.txt") units"

mkdir -p "$work/ours" "$work/hf" "$work/spm"
/usr/bin/time -v "$tool" train "$work/ours" --vocab 8000 --threads "$threads" \
    --terms "$data/terms.txt" "$work/all.txt" > "$work/ours.t" 2> "$work/ours.err"
ours=$(cat "$work/ours.t")
rss=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$work/ours.err")
alpha=$(sed -n 's/.*alphabet \([0-9]*\) of.*/\1/p' "$work/ours.err")
grep trained "$work/ours.err"
echo "ours:  train ${ours}s, peak RSS $((rss / 1024)) MB"

hf=$(RAYON_NUM_THREADS=$threads python3 "$here/bpe_bench.py" hf-train "$work/all.txt" \
     "$data/terms.txt" 8000 "$alpha" "$work/hf")
echo "hf:    train ${hf}s  -> ours/hf = $(python3 -c "print(f'{$ours/$hf:.3f}')")"
if python3 -c "import sentencepiece" 2>/dev/null; then
    spm=$(python3 "$here/bpe_bench.py" spm-train "$work/all.txt" "$data/terms.txt" 8000 \
          "$threads" "$work/spm")
    echo "spm:   train ${spm}s -> ours/spm = $(python3 -c "print(f'{$ours/$spm:.3f}')")"
fi

for th in 1 2; do
    read -r ot omb _ _ < <("$tool" encode "$work/ours/tokenizer.bin" "$work/all.txt" \
                          --threads $th --max-len 1000000000 --bench 2>/dev/null)
    read -r ht hmb _ _ < <(RAYON_NUM_THREADS=$th TOKENIZERS_PARALLELISM=true python3 \
                          "$here/bpe_bench.py" hf-encode "$work/ours/tokenizer.json" "$work/all.txt")
    echo "encode $th thread(s): ours ${omb} MB/s (${ot}s), hf ${hmb} MB/s (${ht}s) -> $(python3 -c "print(f'{$omb/$hmb:.2f}')")x"
done
