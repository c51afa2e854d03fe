#!/usr/bin/env bash
# rerun_compress_test.sh — issue 12: editing one parameter of one
# compression stage reruns exactly that node, its dependents and the
# report.  A small compression chain on the generated law corpus
# (tests/tools/gen_laws.py): pretrain -> finetune -> trim-vocab -> prune ->
# distill -> quantize (int8 and 4-bit) -> report, like graphs/legal.graph.
#   1. a null build runs nothing; `flow status` says every node is up to date;
#   2. --set q4.group=64 (was 32): `flow status` names q4 stale and only the
#      report downstream of it; the build reruns exactly q4 and report, every
#      other node cached with its old key;
#   3. --set pr.ffn_ratio=0.75 (was 0.5): exactly pr, dist, q8, q4 and report;
#   4. back to the graph as written: nothing reruns (both variants cached).
# What ran is read from the builds' --json events (status "ran" / "cached").
# Sizes: head size 64 and FFN 256 -> 128 or 192 after pruning, so groups
# of 32 and 64 both divide every quantized width.
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init rerun-compress
flowtest_need_python3

python3 "$SRC/tests/tools/gen_laws.py" "$T/data" 11
cat > "$T/c.graph" <<EOF
docs = source { path = "$T/data"  labels = folders }
c = clean { input = docs }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
tok = bpe { text = [s.train]  vocab_size = 200 }
enc = encode { corpus = s  tokenizer = tok  max_len = 32 }
pt = pretrain { train = enc.train  dev = enc.dev  tokenizer = tok  hidden = 128  layers = 2  heads = 2
                intermediate = 256  max_len = 32  batch = 8  max_steps = 6  dev_max = 20 }
ft = finetune { train = enc.train  dev = enc.dev  base = pt  clean = c  batch = 8  max_steps = 10  lr = 0.003 }
trim = trim-vocab { model = ft  corpus = s.train }
tenc = encode { corpus = s  tokenizer = trim.tokenizer  max_len = 32 }
pr = prune { model = trim  dev = s.dev  head_ratio = 0.5  ffn_ratio = 0.5  scope = layer  rounds = 2 }
dist = distill { teacher = trim  student = pr  train = tenc.train  dev = tenc.dev  batch = 8  max_steps = 6 }
q8 = quantize { model = dist  bits = 8  method = rtn }
q4 = quantize { model = dist  calibration = s.train  bits = 4  group = 32  method = gptq  calibration_sequences = 16 }
report = report { models = [ft, trim, pr, dist, q8, q4]  teacher = ft  test = s.test  training = [pt, ft, dist]
                  final = q4  gates = warn  timing_units = 0 }
EOF
G=$T/c.graph
build() {   # build EVENTS [ARGS...]
    local e=$1; shift
    "$FLOW" build "$G" --cache "$T/cache" --json -j 2 "$@" > "$T/$e" 2> "$T/$e.stderr"
}
ran() {     # ran EVENTS: the nodes that ran, sorted, on one line
    python3 -c '
import json, sys
print(" ".join(sorted(e["node"] for e in map(json.loads, open(sys.argv[1]))
                      if e.get("event") == "finished" and e.get("status") == "ran")))' "$T/$1"
}
cached() {  # cached EVENTS: the nodes that were cached, sorted
    python3 -c '
import json, sys
print(" ".join(sorted(e["node"] for e in map(json.loads, open(sys.argv[1]))
                      if e.get("event") == "finished" and e.get("status") == "cached")))' "$T/$1"
}
keys() {    # keys EVENTS: "node key" per node, sorted
    python3 -c '
import json, sys
for n, k in sorted((e["node"], e["key"]) for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "finished"):
    print(n, k)' "$T/$1"
}
stale() {   # stale [ARGS...]: the nodes flow status does not call fresh, sorted
    "$FLOW" status "$G" --cache "$T/cache" --json "$@" | python3 -c '
import json, sys
print(" ".join(sorted(d["node"] for d in json.load(sys.stdin) if d["state"] != "fresh")))'
}
ALL="c dist docs enc ft pr pt q4 q8 report s tenc tok trim"

# ---- 1. cold build, then a null build -------------------------------------
build a.ev; rc=$?
check "cold build succeeds (rc $rc): $(tail -3 "$T/a.ev.stderr")" test $rc -eq 0
check "cold build ran every node ($(ran a.ev))" test "$(ran a.ev)" = "$ALL"
build n.ev
check "null build runs nothing ($(ran n.ev))" test -z "$(ran n.ev)"
check "flow status: everything up to date ($(stale))" test -z "$(stale)"

# ---- 2. the quantize group size -------------------------------------------
s=$(stale --set q4.group=64)
check "status with q4.group=64 names exactly q4 and report stale ($s)" test "$s" = "q4 report"
build g.ev --set q4.group=64; rc=$?
check "build with q4.group=64 succeeds (rc $rc): $(tail -2 "$T/g.ev.stderr")" test $rc -eq 0
check "q4.group=64 reruns exactly q4 and report ($(ran g.ev))" test "$(ran g.ev)" = "q4 report"
check "... and every other node is cached ($(cached g.ev))" \
    test "$(cached g.ev)" = "c dist docs enc ft pr pt q8 s tenc tok trim"
check "... with the keys it had" test "$(keys a.ev | grep -v '^q4 \|^report ')" = "$(keys g.ev | grep -v '^q4 \|^report ')"
check "... and q4 has a new key" test "$(keys a.ev | grep '^q4 ')" != "$(keys g.ev | grep '^q4 ')"

# ---- 3. the prune ratio ------------------------------------------------------
s=$(stale --set pr.ffn_ratio=0.75)
check "status with pr.ffn_ratio=0.75 names pr and its dependents stale ($s)" test "$s" = "dist pr q4 q8 report"
build p.ev --set pr.ffn_ratio=0.75; rc=$?
check "build with pr.ffn_ratio=0.75 succeeds (rc $rc): $(tail -2 "$T/p.ev.stderr")" test $rc -eq 0
check "pr.ffn_ratio=0.75 reruns exactly pr, dist, q8, q4 and report ($(ran p.ev))" \
    test "$(ran p.ev)" = "dist pr q4 q8 report"
check "... and every other node is cached ($(cached p.ev))" test "$(cached p.ev)" = "c docs enc ft pt s tenc tok trim"

# ---- 4. back to the graph as written -------------------------------------------
build b.ev
check "the graph as written again: nothing reruns ($(ran b.ev))" test -z "$(ran b.ev)"
check "... same keys as the first build" test "$(keys a.ev)" = "$(keys b.ev)"

if [ $fail -ne 0 ]; then echo "rerun_compress_test: FAILED"; exit 1; fi
echo "rerun_compress_test: all checks passed"
