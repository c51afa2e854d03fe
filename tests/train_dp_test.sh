#!/usr/bin/env bash
# train_dp_test.sh — data-parallel training on the CPU gives the same bytes
# as one worker (stages/model/train_dp.c, kernels/dp.h): pretrain
# (grad_accum 4, dropout) and finetune (grad_accum 3) with
#   1. workers = 1 (reference) vs workers = 3 / 2 threads in one process:
#      same keys (workers is not in the key), same weights and loss curves;
#   2. 2 processes (FLOW_DP_WORLD/RANK) meeting through a file rendezvous,
#      each with its own cache: both get the reference bytes;
#   3. 2 processes x workers = 3 through a TCP rendezvous: the same;
#   4. errors: a missing rank times out naming the rendezvous file; ranks
#      with different workers are refused; workers on a stage that does not
#      train is a graph error; precision = bf16 on the CPU fails the node.
# Needs $FLOW (set by ctest) and python3.
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init train-dp
flowtest_need_python3
python3 "$SRC/tests/tools/gen_laws.py" "$T/tree" 11
graph() {   # graph FILE PT_EXTRA FT_EXTRA
    cat > "$1" <<EOF
docs = source { path = "$T/tree"  labels = folders }
c = clean { input = docs }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
tok = bpe { text = [s.train]  vocab_size = 200 }
enc = encode { corpus = s  tokenizer = tok  max_len = 32 }
pt = pretrain { train = enc.train  dev = enc.dev  tokenizer = tok
                hidden = 32  layers = 1  heads = 2  intermediate = 64  max_len = 32  dropout = 0.1
                batch = 4  grad_accum = 4  max_steps = 6  dev_max = 50  lr = 0.001  $2 }
ft = finetune { train = enc.train  dev = enc.dev  base = pt  clean = c  batch = 4  grad_accum = 3
                max_steps = 5  lr = 0.003  $3 }
EOF
}
graph "$T/one.graph" "" ""
graph "$T/many.graph" "workers = 3" "workers = 2"
same() { same_parts "$T/R" "$1" "weights loss_curve.tsv" "$PT" "$FT"; }   # same CACHE: pt and ft as the reference

# ---- 1. one worker (reference) vs 3 / 2 threads -----------------------------
build "$T/one.graph" "$T/R" "$T/e1"
check "reference build (rc $?: $(tail -2 "$T/e1.stderr"))" test -n "$(key "$T/e1" ft)"
PT=$(key "$T/e1" pt); FT=$(key "$T/e1" ft)
build "$T/many.graph" "$T/M" "$T/e2"
check "workers build ($(tail -2 "$T/e2.stderr"))" test -n "$(key "$T/e2" ft)"
check "workers is not in the key (pt)" test "$(key "$T/e2" pt)" = "$PT"
check "workers is not in the key (ft)" test "$(key "$T/e2" ft)" = "$FT"
check "workers = 3 / 2: the same weights and loss curves as 1 worker" same "$T/M"
"$FLOW" log "$PT" --cache "$T/M" > "$T/pt.log" 2>&1
check "the log says how the work was spread" grep -q "data-parallel: 3 workers per process x 1 process" "$T/pt.log"

# ---- 2. two processes, file rendezvous ------------------------------------------
rank() {    # rank R GRAPH CACHE RENDEZVOUS
    FLOW_DP_WORLD=2 FLOW_DP_RANK=$1 FLOW_DP_RENDEZVOUS=$4 FLOW_DP_TIMEOUT=120 \
        "$FLOW" build "$2" --cache "$3" -j 1 > "$3.out" 2>&1
}
rank 0 "$T/one.graph" "$T/F0" "file:$T/rdv" & p0=$!
rank 1 "$T/one.graph" "$T/F1" "file:$T/rdv"; rc1=$?
wait $p0; rc0=$?
check "2 processes (file rendezvous) succeed (rc $rc0 $rc1: $(grep -h error "$T/F0.out" "$T/F1.out" | head -2))" test $rc0 = 0 -a $rc1 = 0
check "rank 0 (file rendezvous): the reference bytes" same "$T/F0"
check "rank 1 (file rendezvous): the reference bytes" same "$T/F1"
check "the rendezvous files are removed" test -z "$(find "$T/rdv" -type f)"

# ---- 3. two processes x 3 workers, TCP rendezvous ------------------------------
PORT=$((20000 + $$ % 20000))
rank 0 "$T/many.graph" "$T/G0" "tcp:127.0.0.1:$PORT" & p0=$!
rank 1 "$T/many.graph" "$T/G1" "tcp:127.0.0.1:$PORT"; rc1=$?
wait $p0; rc0=$?
check "2 processes x workers (tcp rendezvous) succeed (rc $rc0 $rc1: $(grep -h error "$T/G0.out" "$T/G1.out" | head -2))" test $rc0 = 0 -a $rc1 = 0
check "rank 0 (tcp, 2 x 3 workers): the reference bytes" same "$T/G0"
check "rank 1 (tcp, 2 x 3 workers): the reference bytes" same "$T/G1"

# ---- 4. errors ---------------------------------------------------------------
FLOW_DP_WORLD=2 FLOW_DP_RANK=1 FLOW_DP_RENDEZVOUS="file:$T/rdv2" FLOW_DP_TIMEOUT=1 \
    "$FLOW" build "$T/one.graph" --cache "$T/X" -j 1 > "$T/x.out" 2>&1
check "a missing rank fails the build" test $? != 0
check "... naming the rank and its rendezvous file" grep -q "waited 1 s for rank 0's rendezvous file" "$T/x.out"
rank 0 "$T/one.graph" "$T/Y0" "file:$T/rdv3" & p0=$!
rank 1 "$T/many.graph" "$T/Y1" "file:$T/rdv3"
wait $p0
check "ranks with different workers are refused" grep -q "rank 0 has workers = 1, this rank (1) workers = 3" "$T/Y1.out"
FLOW_DP_WORLD=2 "$FLOW" build "$T/one.graph" --cache "$T/Z" > "$T/z.out" 2>&1
check "2 processes without a rendezvous: an error saying what to set" grep -q "no FLOW_DP_RENDEZVOUS" "$T/z.out"
sed 's/vocab_size = 200 }/vocab_size = 200  workers = 2 }/' "$T/one.graph" > "$T/bad.graph"
"$FLOW" build "$T/bad.graph" --cache "$T/Z" > "$T/bad.out" 2>&1
check "workers on bpe is a graph error (exit 2)" test $? = 2
check "... naming the node and what workers is for" grep -q "node 'tok': stage 'bpe' does not train with data-parallel workers" "$T/bad.out"
# mixed precision is the CUDA backend's: on the CPU a node error naming it
graph "$T/bf16.graph" "precision = bf16" ""
"$FLOW" build "$T/bf16.graph" --cache "$T/R" pt > "$T/bf16.out" 2>&1
check "precision = bf16 without a GPU fails the node (exit 1, got $?)" test $? = 1
check "... naming the node and saying why" grep -q "node 'pt'.*precision bf16 needs a GPU: the CPU backend computes in fp32 only (set gpus = 1, or precision = fp32)" "$T/bf16.out"
exit $fail
