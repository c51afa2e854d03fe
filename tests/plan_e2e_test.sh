#!/bin/bash
# plan_e2e_test.sh — `flow plan` on graphs/legal-3gpu.graph: output shape
# (both training nodes, every module row, the parameter total of the
# reference config computed here from the architecture, every memory line,
# the fit verdict), the choice under a small --gpu-mem (global batch kept,
# recomputation reported), nothing fits (exit 1), and usage errors naming
# the flag (exit 2).  Needs no corpus: the planner reads only the graph.
set -u
FLOW=${FLOW:?set FLOW to the flow binary}
SRC=${FLOW_SRC:?set FLOW_SRC to the source folder}
G="$SRC/graphs/legal-3gpu.graph"
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
expect() {
    local want=$1; shift
    out=$("$@" 2>&1); local rc=$?
    [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want; output: $out"
}
contains() { case "$out" in *"$1"*) ;; *) fail "output lacks '$1': $out" ;; esac; }
lacks() { case "$out" in *"$1"*) fail "output has '$1': $out" ;; esac; }

expect 0 "$FLOW" plan "$G" --gpu-mem 8GiB
contains "node 'pretrain' (pretrain, line"
contains "node 'finetune' (finetune, line"
contains "MLM head, V 8000 H 768 L 6 heads 12 I 3072, seq 512, bf16, 3 GPUs"
[ "$(grep -c '^  module ' <<<"$out")" = 2 ] || fail "expected 2 module tables: $out"
for m in embeddings layer.0 layer.1 layer.2 layer.3 layer.4 layer.5; do
    [ "$(grep -c "^  $m " <<<"$out")" = 2 ] || fail "module row $m not in both tables"
done
lacks "layer.6"
[ "$(grep -c '^  mlm_head ' <<<"$out")" = 1 ] || fail "one mlm_head row expected"
[ "$(grep -c '^  cls_head ' <<<"$out")" = 1 ] || fail "one cls_head row expected"
# the reference MLM model's parameters, from the architecture (kernels.h table)
V=8000 H=768 L=6 I=3072 P=512
emb=$((V * H + P * H + 2 * H + 2 * H))
layer=$((4 * H * H + 4 * H + 2 * H + 2 * H * I + I + H + 2 * H))
mlm=$((H * H + H + 2 * H + V))
total=$((emb + L * layer + mlm))
grep -Eq "^  embeddings +$emb " <<<"$out" || fail "embeddings params != $emb"
grep -Eq "^  layer.0 +$layer " <<<"$out" || fail "layer params != $layer"
grep -Eq "^  mlm_head +$mlm " <<<"$out" || fail "mlm_head params != $mlm"
grep -Eq "^  total +$total " <<<"$out" || fail "pretrain total params != $total"
for k in params grads master moments acts workspace nccl total; do
    [ "$(grep -Ec "^    $k +[0-9]+\.[0-9] MiB$" <<<"$out")" -ge 2 ] || fail "memory line '$k' missing"
done
[ "$(grep -c '^  plan: fits 7372.8 MiB usable' <<<"$out")" = 2 ] || fail "both nodes should fit 8GiB as requested"
contains "requested: micro-batch 16 x accum 4 per device, global batch 192"
contains "estimate only: not yet checked against a measured GPU peak"

# one GPU: no NCCL buckets; 8000MiB and 8G parse
expect 0 "$FLOW" plan "$G" --gpu-mem 8000MiB --gpus 1
contains "1 GPU"
grep -Eq "^    nccl +0\.0 MiB$" <<<"$out" || fail "nccl should be 0 on one GPU"
expect 0 "$FLOW" plan "$G" --gpu-mem=8G --precision fp32
contains "fp32, 3 GPUs"
grep -Eq "^    master +0\.0 MiB$" <<<"$out" || fail "fp32 has no master copy"

# too big a batch: smaller micro-batch, same global batch
expect 0 "$FLOW" plan "$G" --gpu-mem 8GiB --set pretrain.batch=64
contains "chose micro-batch 32 x accum 8 (global batch 768 kept), recomputation off"
# 1 GiB: micro-batch 1 is not enough, recomputation goes on
expect 0 "$FLOW" plan "$G" --gpu-mem 1GiB
contains "chose micro-batch 1 x accum 64 (global batch 192 kept), recomputation ON (saves"
# nothing fits: exit 1, said
expect 1 "$FLOW" plan "$G" --gpu-mem 256MiB
contains "DOES NOT FIT"

# usage errors name the flag
for v in 8 8gib GiB 8.G -1G 8GiBs; do
    expect 2 "$FLOW" plan "$G" --gpu-mem "$v"
    contains "--gpu-mem: '$v'"
done
expect 2 "$FLOW" plan "$G" --gpu-mem
contains "--gpu-mem needs a size"
for v in 0 x 3x -2; do
    expect 2 "$FLOW" plan "$G" --gpus "$v"
    contains "--gpus: '$v'"
done
expect 2 "$FLOW" plan "$G" --precision fp8
contains "--precision: 'fp8'"
expect 2 "$FLOW" plan "$G" --set pretrain.hidden=100
contains "not a multiple of heads"
expect 2 "$FLOW" plan

[ "$fails" = 0 ] || { echo "plan_e2e_test: $fails failures" >&2; exit 1; }
echo "plan_e2e_test: ok"
