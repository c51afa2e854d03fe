#!/bin/bash
# concurrent_test.sh — four `flow build` processes at once on one cache,
# over overlapping graphs (nodes with identical definitions have identical
# keys): every build succeeds, the cache verifies, and no node is built
# twice: each exec node appends its label to a counter file when it runs.
set -u
FLOW=${FLOW:?FLOW must point at the flow binary}
T=$(mktemp -d "${TMPDIR:-/tmp}/flow-conc-XXXXXX")
trap 'rm -rf "$T"' EXIT
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"
R=$T/runs.txt
: > "$R"
node() {   # node NAME LABEL SLEEP [INPUT...]
    local name=$1 label=$2 sl=$3
    shift 3
    local ins="" cat=""
    for i in "$@"; do ins="$ins${ins:+, }$i"; done
    # the command must not name the inputs (names differ between graphs)
    [ -n "$ins" ] && cat='$(cat {in}/*/o.txt)'
    echo "$name = exec { in = [$ins] command = \"echo $label >> $R; sleep $sl; echo $label $cat > o.txt\" outputs = [\"o.txt\"] }"
}
# shared chain s1 -> s2 -> s3 in every graph; pairs share p12 / p34; each
# graph has its own u<i>.  Node names differ between graphs on purpose:
# the key, not the name, identifies the work.
for g in 1 2 3 4; do
    {
        node "s1_$g" s1 0.3
        node "s2_$g" s2 0.2 "s1_$g"
        node "s3_$g" s3 0.1 "s2_$g"
        if [ $g -le 2 ]; then node "p_$g" p12 0.2 "s2_$g"; else node "p_$g" p34 0.2 "s2_$g"; fi
        node "u_$g" "u$g" 0.1 "s3_$g" "p_$g"
    } > "$T/g$g.graph"
done
# `in = []` for the first node: exec's input is optional
sed -i 's/in = \[\] //' "$T"/g*.graph
pids=()
for g in 1 2 3 4; do
    "$FLOW" build "$T/g$g.graph" --cache "$T/cache" -j 2 > "$T/out$g.txt" 2>&1 &
    pids+=($!)
done
fail=0
for g in 1 2 3 4; do
    if ! wait "${pids[$((g - 1))]}"; then
        echo "build $g failed:"; cat "$T/out$g.txt"; fail=1
    fi
done
for label in s1 s2 s3 p12 p34 u1 u2 u3 u4; do
    n=$(grep -cx "$label" "$R")
    if [ "$n" -ne 1 ]; then
        echo "node '$label' ran $n times (expected exactly once)"; fail=1
    fi
done
if ! "$FLOW" verify --cache "$T/cache" > "$T/verify.txt" 2>&1; then
    echo "verify failed:"; cat "$T/verify.txt"; fail=1
fi
# every build reports every node as ran or cached
for g in 1 2 3 4; do
    n=$(grep -cE '(ran|cached) +[su]|(ran|cached) +p_' "$T/out$g.txt")
    [ "$n" -eq 5 ] || { echo "build $g reported $n of 5 nodes:"; cat "$T/out$g.txt"; fail=1; }
done
# a fifth build afterwards: all cached
"$FLOW" build "$T/g1.graph" --cache "$T/cache" --json > "$T/after.json" 2>&1
grep -q '"ran":0,"cached":5' "$T/after.json" || { echo "rebuild not fully cached:"; cat "$T/after.json"; fail=1; }
[ "$fail" = 0 ] && echo "concurrent_test: 4 concurrent builds, each of 9 distinct nodes built once, cache verified"
exit $fail
