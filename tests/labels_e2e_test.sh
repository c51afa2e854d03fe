#!/usr/bin/env bash
# labels_e2e_test.sh — same key, same bytes for stages that label their
# inputs (evaluate, report): a model node named A
# and, in a second graph over the same cache, the identical node named B.
# The artifact is shared (same content), so only the consumers' bindings
# differ: their keys must differ (the reference texts enter the key,
# flow_key_input_refs) and their outputs must name B, never A (the
# producer's name from the shared artifact's metadata); rebuilding the
# first graph must still give A's bytes, and a fresh cache gives the second
# graph's bytes too.  Small generated corpus (tests/tools/gen_laws.py).
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init labels-e2e
flowtest_need_python3
python3 "$SRC/tests/tools/gen_laws.py" "$T/data" 5
graph() {   # graph NAME: the graph with the model node called NAME
    cat <<G
docs = source { path = "$T/data"  labels = folders }
c = clean { input = docs }
s = split { corpus = c  ratios = [0.4, 0.3, 0.3]  seed = 3 }
tok = bpe { text = [s.train]  vocab_size = 150 }
enc = encode { corpus = s  tokenizer = tok  max_len = 24 }
$1 = finetune { train = enc.train  dev = enc.dev  tokenizer = tok  clean = c  hidden = 16  layers = 1
                heads = 2  intermediate = 32  model_max_len = 24  batch = 4  max_steps = 3 }
ev = evaluate { models = [$1]  test = s.test }
rep = report { models = [$1]  test = s.test  training = [$1]  gates = warn  timing_units = 0 }
G
}
graph A > "$T/a.graph"
graph B > "$T/b.graph"
key() {     # key GRAPH CACHE NODE
    "$FLOW" status "$1" --cache "$2" --json | python3 -c '
import json, sys
print([e for e in json.load(sys.stdin) if e["node"] == sys.argv[1]][0]["key"])' "$3"
}
dump() {    # dump GRAPH CACHE OUTFILE: the labelled outputs of one build
    local g=$1 c=$2 o=$3
    : > "$o"
    for p in ev:evaluation.json ev:report.txt rep:report.md rep:report.json; do
        "$FLOW" cat "$(key "$g" "$c" ${p%%:*})" "${p#*:}" --cache "$c" >> "$o" || echo "cat $p failed" >> "$o"
    done
}
b() { "$FLOW" build "$1" --cache "$2" -j 2 > "$T/log" 2>&1 || { echo "FAIL: build $1: $(tail -3 "$T/log")"; fail=1; }; }

b "$T/a.graph" "$T/C"
dump "$T/a.graph" "$T/C" "$T/a1"
b "$T/b.graph" "$T/C"
dump "$T/b.graph" "$T/C" "$T/b1"
check "A and B are the same artifact (the test needs a shared model)" \
    test "$(key "$T/a.graph" "$T/C" A)" = "$(key "$T/b.graph" "$T/C" B)"
for n in ev rep; do
    check "$n: graph B's key differs from graph A's" \
        test "$(key "$T/a.graph" "$T/C" $n)" != "$(key "$T/b.graph" "$T/C" $n)"
done
# labels: evaluation.json "name", report rows and curves
check "graph A's outputs name A" grep -q '"A"' "$T/a1"
check "graph B's outputs name B" grep -q '"B"' "$T/b1"
check "graph B's outputs never name A" bash -c "! grep -qw A '$T/b1'"
check "graph A's outputs never name B" bash -c "! grep -qw B '$T/a1'"
# the first graph again, same cache: still A's bytes
b "$T/a.graph" "$T/C"
dump "$T/a.graph" "$T/C" "$T/a2"
check "graph A rebuilt after B: same bytes as before" cmp -s "$T/a1" "$T/a2"
# graph B in a fresh cache (its model built under the name B): same bytes
b "$T/b.graph" "$T/D"
dump "$T/b.graph" "$T/D" "$T/b2"
check "graph B in a fresh cache: same bytes as after graph A" cmp -s "$T/b1" "$T/b2"
[ $fail -eq 0 ] && echo "labels_e2e: ok"
exit $fail
