#!/usr/bin/env bash
# train_zero_test.sh — ZeRO-1 (`zero = 1`: each data-parallel process keeps
# the AdamW moments of its slice of the flat buffers and updates only it,
# kernels/dp.h) gives the bytes of unsharded training: pretrain (grad_accum
# 4, dropout, clipped) and finetune (grad_accum 3) of a model of 2.74
# gradient blocks (179,656 floats), so 2 processes get slices of 2 and 0.74
# blocks and 3 get 1, 1 and 0.74 (uneven, the last shorter):
#   1. zero = 1 in one process: the keys (zero is not in the key) and the
#      weights and loss curves of the reference (1 process, no zero);
#   2. 2 processes (file rendezvous) and 3 processes x workers = 2 (TCP):
#      every rank stores the reference bytes; the log names the shard;
#   3. kill -9 of both ranks of a 2-process zero build after the step-4
#      checkpoint of pretrain; the checkpoint holds the whole moments, so it
#      resumes with 3 processes (zero = 1) and with 1 process (no zero), each
#      to the reference bytes;
#   4. errors: ranks with different zero, zero = 2, zero on bpe.
# Needs $FLOW and $FLOW_BUILD (flow_testhooks for the kill) and python3.
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init train-zero
flowtest_need_hooks
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
                hidden = 128  layers = 1  heads = 2  intermediate = 256  max_len = 32  dropout = 0.1
                batch = 4  grad_accum = 4  max_steps = 6  dev_max = 50  lr = 0.001  max_grad_norm = 0.5
                checkpoint_every = 2  $2 }
ft = finetune { train = enc.train  dev = enc.dev  base = pt  clean = c  batch = 4  grad_accum = 3
                max_steps = 5  lr = 0.003  $3 }
EOF
}
graph "$T/one.graph" "" ""
graph "$T/zero.graph" "zero = 1" "zero = 1"
graph "$T/zerow.graph" "zero = 1  workers = 2" "zero = 1  workers = 2"
same() { same_parts "$T/R" "$1" "weights loss_curve.tsv" "$PT" "$FT"; }   # same CACHE: pt and ft as the reference
ranks() {   # ranks WORLD GRAPH CACHE_PREFIX RENDEZVOUS [BIN]: rank q builds into PREFIXq; rc of all
    local world=$1 g=$2 c=$3 rdv=$4 bin=${5:-$FLOW} q pids=() rc=0
    for ((q = 0; q < world; q++)); do
        FLOW_DP_WORLD=$world FLOW_DP_RANK=$q FLOW_DP_RENDEZVOUS=$rdv FLOW_DP_TIMEOUT=120 \
            "$bin" build "$g" --cache "$c$q" -j 1 > "$c$q.out" 2>&1 &
        pids+=($!)
    done
    for q in "${pids[@]}"; do wait "$q" || rc=1; done
    return $rc
}

# ---- 1. reference, and zero = 1 in one process ----------------------------------
build "$T/one.graph" "$T/R" "$T/e1"
check "reference build ($(tail -2 "$T/e1.stderr"))" test -n "$(key "$T/e1" ft)"
PT=$(key "$T/e1" pt); FT=$(key "$T/e1" ft)
build "$T/zero.graph" "$T/Z" "$T/e2"
check "zero build ($(tail -2 "$T/e2.stderr"))" test -n "$(key "$T/e2" ft)"
check "zero is not in the key (pt)" test "$(key "$T/e2" pt)" = "$PT"
check "zero is not in the key (ft)" test "$(key "$T/e2" ft)" = "$FT"
check "zero = 1, one process: the reference weights and loss curves" same "$T/Z"
"$FLOW" log "$PT" --cache "$T/R" > "$T/ref.log" 2>&1
check "the reference run clips (grad norm above max_grad_norm 0.5)" \
    python3 -c "import sys; sys.exit(0 if max(float(l.split()[3]) for l in open(sys.argv[1])) > 0.5 else 1)" \
    <("$FLOW" cat "$PT" loss_curve.tsv --cache "$T/R")

# ---- 2. 2 processes (file), 3 processes x 2 workers (tcp) ------------------------------
ranks 2 "$T/zero.graph" "$T/F" "file:$T/rdv"; rc=$?
check "2 processes, zero (file rendezvous) succeed ($(grep -h error "$T"/F?.out | head -2))" test $rc = 0
check "rank 0 of 2, zero: the reference bytes" same "$T/F0"
check "rank 1 of 2, zero: the reference bytes" same "$T/F1"
"$FLOW" log "$PT" --cache "$T/F1" > "$T/f1.log" 2>&1
check "rank 1's log names its shard (2 blocks of 2.74: floats [131072, n))" \
    grep -q "zero = 1: this process (rank 1 of 2) keeps the AdamW moments of floats \[131072, " "$T/f1.log"
PORT=$((15000 + $$ % 5000))     # apart from train_dp_test's ports
ranks 3 "$T/zerow.graph" "$T/G" "tcp:127.0.0.1:$PORT"; rc=$?
check "3 processes x 2 workers, zero (tcp rendezvous) succeed ($(grep -h error "$T"/G?.out | head -2))" test $rc = 0
for q in 0 1 2; do check "rank $q of 3 x 2 workers, zero: the reference bytes" same "$T/G$q"; done
"$FLOW" log "$PT" --cache "$T/G2" > "$T/g2.log" 2>&1
check "rank 2 of 3 holds the last 0.74 block" \
    grep -q "zero = 1: this process (rank 2 of 3) keeps the AdamW moments of floats \[131072, " "$T/g2.log"

# ---- 3. kill -9 after the step-4 checkpoint, resume with 3 processes / 1 -------------------
FLOW_TEST_KILL_AT=pretrain:4 ranks 2 "$T/zero.graph" "$T/K" "file:$T/rdvk" "$HOOKED"; rc=$?
check "the killed 2-process build fails" test $rc != 0
check "... and stored no pretrain artifact" test -z "$("$FLOW" ls --cache "$T/K0" 2>/dev/null | grep pretrain)"
cp -a "$T/K0" "$T/K2"       # a third host gets a copy of the cache (and of its checkpoint)
cp -a "$T/K1" "$T/S"        # one process resumes another copy alone
ranks 3 "$T/zero.graph" "$T/K" "file:$T/rdvk2"; rc=$?
check "3 processes resume the 2-process checkpoint ($(grep -h error "$T"/K?.out | head -2))" test $rc = 0
for q in 0 1 2; do check "rank $q of 3, resumed: the reference bytes" same "$T/K$q"; done
"$FLOW" log "$PT" --cache "$T/K2" > "$T/k2.log" 2>&1
check "... resumed at step 4" grep -q "resumed from the checkpoint at step 4" "$T/k2.log"
build "$T/one.graph" "$T/S" "$T/e3"
check "1 process without zero resumes it too" test -n "$(key "$T/e3" ft)"
check "... to the reference bytes" same "$T/S"
"$FLOW" log "$PT" --cache "$T/S" > "$T/s.log" 2>&1
check "... from step 4" grep -q "resumed from the checkpoint at step 4" "$T/s.log"

# ---- 4. errors -------------------------------------------------------------------
FLOW_DP_WORLD=2 FLOW_DP_RANK=0 FLOW_DP_RENDEZVOUS="file:$T/rdv3" FLOW_DP_TIMEOUT=60 \
    "$FLOW" build "$T/one.graph" --cache "$T/Y0" -j 1 > "$T/Y0.out" 2>&1 & p0=$!
FLOW_DP_WORLD=2 FLOW_DP_RANK=1 FLOW_DP_RENDEZVOUS="file:$T/rdv3" FLOW_DP_TIMEOUT=60 \
    "$FLOW" build "$T/zero.graph" --cache "$T/Y1" -j 1 > "$T/Y1.out" 2>&1
wait $p0
check "ranks with different zero are refused" grep -q "rank 0 has zero = 0, this rank (1) zero = 1" "$T/Y1.out"
sed 's/zero = 1/zero = 2/' "$T/zero.graph" > "$T/z2.graph"
"$FLOW" build "$T/z2.graph" --cache "$T/X" > "$T/z2.out" 2>&1; rc=$?
check "zero = 2 is a graph error (exit 2)" test $rc = 2
check "... saying only ZeRO-1 exists" grep -q "node 'pt': zero = 2 is not implemented: only ZeRO stage 1" "$T/z2.out"
sed 's/vocab_size = 200 }/vocab_size = 200  zero = 1 }/' "$T/one.graph" > "$T/bad.graph"
"$FLOW" build "$T/bad.graph" --cache "$T/X" > "$T/bad.out" 2>&1; rc=$?
check "zero on bpe is a graph error (exit 2)" test $rc = 2
check "... naming the node" grep -q "node 'tok': stage 'bpe' does not train with data-parallel workers (zero" "$T/bad.out"
exit $fail
