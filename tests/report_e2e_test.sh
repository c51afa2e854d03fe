#!/usr/bin/env bash
# report_e2e_test.sh — the `report` stage and the report / metrics commands
# on a small generated corpus (tests/tools/report_data.py): two baselines
# (hash_bits 14 = the teacher, 12 = the final model), a tiny pretrain and
# finetune, a coverage node, and the report.  Checks:
#  - every variant's accuracy and macro-F1 equal `flow eval` on the raw test
#    folder; KL and top-1 agreement equal what this script computes from
#    `flow classify --all` probabilities; bytes = the weights part's size,
#    bits/weight and compression follow from them;
#  - each gate (coverage, size, accuracy drop) fails the node when violated,
#    saying which gate and by how much; gates = warn builds and reports it;
#  - report.md and report.json are the same bytes in a fresh cache;
#  - editing one baseline parameter reruns exactly that node and the
#    report; `flow metrics diff GRAPH` and `flow metrics diff A B` then
#    show exactly the metrics that changed in the nodes that reran (taken
#    independently from the builds' --json events); `flow metrics GRAPH
#    --json` equals the events' metrics;
#  - `flow report GRAPH` prints the table, `--open` writes report.html.
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init report-e2e
flowtest_need_python3
python3 "$SRC/tests/tools/report_data.py" "$T/data"
cat > "$T/r.graph" <<EOF
docs = source { path = "$T/data/train"  labels = folders }
tdocs = source { path = "$T/data/test"  labels = folders }
c = clean { input = docs }
tc = clean { input = tdocs }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
t = terms { corpus = s.train  min_freq = 3  top_k = 5 }
tok = bpe { text = [s.train]  terms = [t]  vocab_size = 200 }
enc = encode { corpus = s  tokenizer = tok  max_len = 32 }
cov = coverage { corpus = tc  tokenizer = tok  terms = t }
pt = pretrain { train = enc.train  dev = enc.dev  tokenizer = tok  hidden = 32  layers = 1  heads = 2
                intermediate = 64  max_len = 32  batch = 8  max_steps = 20  dev_max = 50  lr = 0.001 }
ft = finetune { train = enc.train  dev = enc.dev  base = pt  clean = c  batch = 8  max_steps = 40
                lr = 0.003  eval_every = 10 }
base = baseline { train = s.train  dev = s.dev  test = s.test  clean = c  hash_bits = 14 }
base2 = baseline { train = s.train  dev = s.dev  test = s.test  clean = c  hash_bits = 12 }
rep = report { models = [base, ft, base2]  teacher = base  test = tc  training = [pt, ft]  coverage = cov
               final = base2  min_size_ratio = 0.1  max_size_ratio = 0.3  timing_units = 8 }
EOF
G=$T/r.graph
build() {   # build CACHE EVENTS [ARGS...]
    local c=$1 e=$2; shift 2
    "$FLOW" build "$G" --cache "$c" --json -j 2 "$@" > "$e" 2> "$e.stderr"
}

# ---- 1. the build and the numbers ------------------------------------------
build "$T/A" "$T/a.ev"; rc=$?
check "build A succeeds (rc $rc): $(tail -3 "$T/a.ev.stderr")" test $rc -eq 0
REP=$(event_field "$T/a.ev" rep key); TC=$(event_field "$T/a.ev" tc key)
"$FLOW" cat "$REP" report.json --cache "$T/A" > "$T/report.json"
"$FLOW" cat "$TC" text --cache "$T/A" > "$T/test_units.txt"
for n in base ft base2; do
    k=$(event_field "$T/a.ev" $n key)
    "$FLOW" eval "$k" "$T/data/test" --json --cache "$T/A" > "$T/eval.$n.json" || { echo "FAIL: flow eval $n"; fail=1; }
    "$FLOW" classify "$k" --all --cache "$T/A" < "$T/test_units.txt" > "$T/probs.$n.tsv" || { echo "FAIL: classify $n"; fail=1; }
    "$FLOW" cat "$k" weights --cache "$T/A" | wc -c > "$T/bytes.$n"
done
python3 - "$T" <<'EOF' || fail=1
import json, math, sys
T = sys.argv[1]
rep = json.load(open(T + "/report.json"))
rows = {v["name"]: v for v in rep["variants"]}
bad = []
def probs(n):
    out = []
    for line in open("%s/probs.%s.tsv" % (T, n)):
        out.append(json.loads(line.rstrip("\n").split("\t")[2]))
    return out
teacher = probs("base")
tb = int(open(T + "/bytes.base").read())
if rep["teacher"] != "base" or rep["final"] != "base2": bad.append("teacher/final %s/%s" % (rep["teacher"], rep["final"]))
if sorted(rows) != ["base", "base2", "ft"]: bad.append("rows %s" % sorted(rows))
for n, v in rows.items():
    e = json.load(open("%s/eval.%s.json" % (T, n)))
    for k in ("accuracy", "macro_f1"):
        if abs(v[k] - e[k]) > 1e-12: bad.append("%s %s: report %r, flow eval %r" % (n, k, v[k], e[k]))
    if v["n"] != e["n"]: bad.append("%s units: report %d, flow eval %d" % (n, v["n"], e["n"]))
    b = int(open("%s/bytes.%s" % (T, n)).read())
    if v["bytes"] != b: bad.append("%s bytes %d, weights part %d" % (n, v["bytes"], b))
    if abs(v["bits_per_weight"] - 8.0 * b / v["params"]) > 1e-9: bad.append("%s bits/weight" % n)
    if abs(v["compression"] - tb / b) > 1e-9: bad.append("%s compression %r vs %r" % (n, v["compression"], tb / b))
    p = probs(n)
    if len(p) != len(teacher) or len(p) != v["n"]: bad.append("%s: %d probability lines for %d units" % (n, len(p), v["n"]))
    agree = sum(max(a, key=a.get) == max(q, key=q.get) for a, q in zip(teacher, p)) / len(p)
    kl = sum(sum(pt * math.log(pt / max(q[k], 1e-30)) for k, pt in a.items() if pt > 0)
             for a, q in zip(teacher, p)) / len(p)
    if abs(v["agreement"] - agree) > 1e-12: bad.append("%s agreement: report %r, classify %r" % (n, v["agreement"], agree))
    if abs(v["kl"] - kl) > 1e-5 * max(1, kl): bad.append("%s KL: report %r, classify %r" % (n, v["kl"], kl))
    if n == "base" and (v["kl"] != 0 or v["agreement"] != 1): bad.append("teacher vs itself: KL %r agreement %r" % (v["kl"], v["agreement"]))
if rows["ft"]["kl"] <= 0: bad.append("ft KL is %r: the check cannot tell models apart" % rows["ft"]["kl"])
st = {g["name"]: g["status"] for g in rep["gates"]["results"]}
if st != {"coverage": "pass", "size": "pass", "accuracy_drop": "pass"}: bad.append("gates %s" % st)
for x in bad: print("FAIL: " + x)
sys.exit(1 if bad else 0)
EOF
check "report.html is not in report.json's deterministic set" python3 -c "
import json,sys; sys.exit(0 if json.load(open('$T/report.json'))['volatile_parts'] == ['report.html', 'timings.json'] else 1)"
check "latency metric recorded" python3 -c "
import json,sys; m = json.loads('''$(event_field "$T/a.ev" rep metrics)'''); sys.exit(0 if m.get('ft.latency_ms_b1', 0) > 0 and m.get('ft.throughput_b32', 0) > 0 else 1)"

# ---- 2. same key, same bytes (deterministic parts) in a fresh cache -------
build "$T/B" "$T/b.ev"; rc=$?
check "build B succeeds (rc $rc)" test $rc -eq 0
check "same report key in a fresh cache" test "$(event_field "$T/b.ev" rep key)" = "$REP"
for p in report.md report.json; do
    "$FLOW" cat "$REP" $p --cache "$T/A" > "$T/$p.A"; "$FLOW" cat "$REP" $p --cache "$T/B" > "$T/$p.B"
    check "$p: same bytes in a fresh cache" cmp -s "$T/$p.A" "$T/$p.B"
done

# ---- 3. gates -----------------------------------------------------------
gate_fails() {   # gate_fails NAME PATTERN --set...: the build fails naming the gate
    local name=$1 pat=$2; shift 2
    build "$T/A" "$T/g.ev" "$@"; local rc=$?
    check "gate $name: the build fails (rc $rc)" test $rc -ne 0
    check "gate $name: the failure names it and by how much ($(grep -o "gate[^;]*" "$T/g.ev.stderr" "$T/g.ev" | head -2))" \
        grep -q "gate '$name' failed: .*$pat" "$T/g.ev.stderr" "$T/g.ev"
    check "gate $name: only that gate fails" test "$(grep -o "gate '[a-z_]*' failed" "$T/g.ev" "$T/g.ev.stderr" | sort -u | wc -l)" = 1
    build "$T/A" "$T/w.ev" "$@" --set rep.gates=warn; rc=$?
    check "gate $name with gates = warn: the build succeeds (rc $rc)" test $rc -eq 0
    local k; k=$(event_field "$T/w.ev" rep key)
    check "gate $name with gates = warn: report.json says it failed" python3 -c "
import json, subprocess, sys
r = json.loads(subprocess.check_output(['$FLOW', 'cat', '$k', 'report.json', '--cache', '$T/A']))
st = {g['name']: g['status'] for g in r['gates']['results']}
sys.exit(0 if st['$name'] == 'fail' and r['gates']['mode'] == 'warn' else 1)"
}
gate_fails coverage "points short" --set rep.min_coverage=0.999
gate_fails size "above the upper bound" --set rep.max_size_ratio=0.2
gate_fails size "below the lower bound" --set rep.min_size_ratio=0.26
gate_fails accuracy_drop "points over" --set rep.final=ft
build "$T/A" "$T/x.ev" --set rep.final=nosuch; rc=$?
check "final naming no model is an error naming the models ($(grep -o "final = .*" "$T/x.ev" | head -1))" \
    grep -q 'final = \\"nosuch\\" is not one of the models.*base, ft, base2' "$T/x.ev"

# ---- 4. one parameter edited: what reruns, and metrics diff ---------------
build "$T/A" "$T/a2.ev"     # back to the graph as written (records it as the last build)
build "$T/A" "$T/c.ev" --set base2.hash_bits=11; rc=$?
check "build C succeeds (rc $rc)" test $rc -eq 0
ran=$(python3 -c '
import json, sys
print(" ".join(sorted(e["node"] for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "finished" and e.get("status") == "ran")))' "$T/c.ev")
check "editing base2.hash_bits reruns exactly base2 and rep (ran: $ran)" test "$ran" = "base2 rep"
python3 - "$T/a2.ev" "$T/c.ev" > "$T/expected.diff" <<'EOF'
import json, sys
def fin(p):
    return {e["node"]: e for e in map(json.loads, open(p)) if e.get("event") == "finished"}
a, c = fin(sys.argv[1]), fin(sys.argv[2])
for n, e in sorted(c.items()):
    if e["status"] != "ran": continue
    old, new = a[n].get("metrics", {}), e.get("metrics", {})
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k): print("%s\t%s\t%r\t%r" % (n, k, old.get(k), new.get(k)))
EOF
"$FLOW" metrics diff "$G" --json --cache "$T/A" > "$T/graph.diff.json"; rc=$?
check "flow metrics diff GRAPH succeeds (rc $rc)" test $rc -eq 0
norm() { python3 -c '
import json, sys
for d in sorted(json.load(open(sys.argv[1])), key=lambda d: (d["node"], d["metric"])):
    print("%s\t%s\t%r\t%r" % (d["node"], d["metric"], d["old"], d["new"]))' "$1" | sort; }
sort "$T/expected.diff" > "$T/expected.sorted"
norm "$T/graph.diff.json" > "$T/graph.sorted"
check "metrics diff GRAPH = the rerun nodes' changed metrics ($(diff "$T/expected.sorted" "$T/graph.sorted" | head -4 | tr '\n' ' '))" \
    cmp -s "$T/expected.sorted" "$T/graph.sorted"
check "the diff has base2 and rep metrics" test "$(cut -f1 "$T/expected.sorted" | sort -u | tr '\n' ' ')" = "base2 rep "
check "the diff has the final model's bytes" grep -q "^rep	base2.bytes	" "$T/graph.sorted"
"$FLOW" metrics diff "$(event_field "$T/a2.ev" rep key)" "$(event_field "$T/c.ev" rep key)" --json --cache "$T/A" > "$T/ab.diff.json"
norm "$T/ab.diff.json" > "$T/ab.sorted"
check "metrics diff A B of the report = its rows of the graph diff" cmp -s "$T/ab.sorted" <(grep "^rep	" "$T/graph.sorted")
"$FLOW" metrics diff "$G" --cache "$T/A" > "$T/graph.diff.txt"
check "text diff has a header and the delta" grep -q "^rep  *base2.bytes .* -" "$T/graph.diff.txt"
build "$T/A" "$T/d.ev" --set base2.hash_bits=11       # a null build changes nothing
"$FLOW" metrics diff "$G" --json --cache "$T/A" > "$T/graph.diff2.json"
check "after a null build the diff still compares the last two builds" cmp -s <(norm "$T/graph.diff.json") <(norm "$T/graph.diff2.json")

# ---- 5. flow metrics GRAPH, flow report -------------------------------------
"$FLOW" metrics "$G" --json --set base2.hash_bits=11 --cache "$T/A" > "$T/metrics.json"
check "flow metrics GRAPH --json = the last build's metrics" python3 - "$T/metrics.json" "$T/c.ev" <<'EOF'
import json, sys
m = {d["node"]: d for d in json.load(open(sys.argv[1]))}
ev = {e["node"]: e for e in map(json.loads, open(sys.argv[2])) if e.get("event") == "finished"}
ok = set(m) == set(ev) and all(m[n]["state"] == "fresh" and m[n]["metrics"] == ev[n].get("metrics", {}) for n in ev)
sys.exit(0 if ok else 1)
EOF
"$FLOW" report "$G" --set base2.hash_bits=11 --cache "$T/A" > "$T/report.txt"; rc=$?
check "flow report GRAPH prints the table (rc $rc)" grep -q "^base2 (final) *tfidf-linear" "$T/report.txt"
check "flow report GRAPH prints the gates" grep -q "size: pass" "$T/report.txt"
check "... with their mode and outcome apart" grep -q "^gates (gates = fail): 0 of 3 failed$" "$T/report.txt"
"$FLOW" report "$G" --set base2.hash_bits=10 --cache "$T/A" > "$T/report.stale.txt"
check "flow report GRAPH for an edit not built yet: the last build, said so" grep -q "^rep: artifact .*(stale" "$T/report.stale.txt"
check "... and that build's table" grep -q "^base2 (final)" "$T/report.stale.txt"
out=$("$FLOW" report "$G" --open -o "$T/page.html" --set base2.hash_bits=11 --cache "$T/A")
check "flow report --open prints the path" test "$out" = "$T/page.html"
"$FLOW" cat "$(event_field "$T/c.ev" rep key)" report.html --cache "$T/A" > "$T/page.cat"
check "flow report --open writes report.html" cmp -s "$T/page.html" "$T/page.cat"
exit $fail
