#!/usr/bin/env bash
# legal_parts_diff.sh — builds a graph (default graphs/legal.graph) with two
# flow binaries, each into its own fresh cache, and compares every node's
# parts byte for byte (sha256).  This is how a refactoring shows "behaviour
# unchanged": every part of every node is identical, except the parts the
# change deliberately alters (which it names, with the stage version bump).
#
#   tests/bench/legal_parts_diff.sh FLOW_BEFORE FLOW_AFTER [GRAPH] [-- BUILD ARGS...]
#
# BUILD ARGS go to both builds, e.g. a small variant:
#   -- --set pretrain.max_steps=40 --set finetune.max_steps=20
# Environment: WORK (default: a fresh mktemp folder, kept), JOBS (-j, 2),
# REUSE=1 compares the two builds already in WORK without rebuilding;
# REUSE_BEFORE=1 rebuilds only the "after" side.
# Output: one line per node (same / DIFF with the differing parts; for a
# differing `weights` part, weights_compare.py says whether the tensors
# are the same in another format); exit 0 when all parts are identical, 1
# when some differ (the caller judges whether each difference is
# deliberate).
set -euo pipefail
A=${1:?usage: legal_parts_diff.sh FLOW_BEFORE FLOW_AFTER [GRAPH] [-- ARGS]}
B=${2:?usage: legal_parts_diff.sh FLOW_BEFORE FLOW_AFTER [GRAPH] [-- ARGS]}
shift 2
SRC=$(cd "$(dirname "$0")/../.." && pwd)
GRAPH=$SRC/graphs/legal.graph
if [ $# -gt 0 ] && [ "$1" != "--" ]; then GRAPH=$1; shift; fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
WORK=${WORK:-$(mktemp -d /tmp/flow-parts-diff.XXXXXX)}
JOBS=${JOBS:-2}
mkdir -p "$WORK"
echo "work folder: $WORK"

# build SIDE BINARY: cache $WORK/SIDE, node -> key in $WORK/SIDE.keys
build() {
    local side=$1 bin=$2
    shift 2
    rm -rf "$WORK/$side"
    local t0=$SECONDS
    OMP_WAIT_POLICY=passive "$bin" build "$GRAPH" --cache "$WORK/$side" --json -j "$JOBS" "$@" \
        > "$WORK/$side.json" 2> "$WORK/$side.err" || {
        echo "build with $bin failed; see $WORK/$side.err"; tail -5 "$WORK/$side.err"; exit 2; }
    python3 - "$WORK/$side.json" > "$WORK/$side.keys" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    ev = json.loads(line)
    if ev.get("event") == "finished" and ev.get("status") in ("ran", "cached"):
        print(ev["node"], ev["key"])
EOF
    echo "$side: built $(wc -l < "$WORK/$side.keys") nodes in $((SECONDS - t0)) s"
}

# parts SIDE BINARY NODE KEY: "part sha256" lines in $WORK/SIDE.NODE.sums
parts() {
    local side=$1 bin=$2 node=$3 key=$4
    local out=$WORK/$side.$node.sums
    : > "$out"
    "$bin" cat "$key" --cache "$WORK/$side" | sed -E 's/^ *[0-9]+  //' | while IFS= read -r p; do
        printf '%s\t%s\n' "$p" "$("$bin" cat "$key" "$p" --cache "$WORK/$side" | sha256sum | cut -c1-16)" >> "$out"
    done
}

shift_args=("$@")
if [ -n "${REUSE:-}" ] && [ -s "$WORK/before.keys" ] && [ -s "$WORK/after.keys" ]; then
    echo "REUSE set: comparing the builds already in $WORK"
elif [ -n "${REUSE_BEFORE:-}" ] && [ -s "$WORK/before.keys" ]; then
    echo "REUSE_BEFORE set: keeping the build with $A in $WORK"
    build after "$B" "${shift_args[@]}"
else
    build before "$A" "${shift_args[@]}"
    build after "$B" "${shift_args[@]}"
fi

status=0
printf '\n%-14s %-8s %s\n' node result "differing parts"
while read -r node key; do
    kb=$(awk -v n="$node" '$1 == n { print $2 }' "$WORK/after.keys")
    if [ -z "$kb" ]; then printf '%-14s %-8s %s\n' "$node" MISSING "(not built after)"; status=1; continue; fi
    parts before "$A" "$node" "$key"
    parts after "$B" "$node" "$kb"
    d=$(diff <(sort "$WORK/before.$node.sums") <(sort "$WORK/after.$node.sums") \
        | awk '/^[<>]/ { sub(/^[<>] /, ""); split($0, f, "\t"); print f[1] }' | sort -u | tr '\n' ' ' || true)
    same_key=$([ "$key" = "$kb" ] && echo "same key" || echo "new key")
    if [ -z "$d" ]; then
        printf '%-14s %-8s (%s)\n' "$node" same "$same_key"
    else
        printf '%-14s %-8s %s(%s)\n' "$node" DIFF "$d" "$same_key"
        status=1
        if [[ " $d " == *" weights "* ]]; then      # same tensors in another format?
            "$A" cat "$key" weights --cache "$WORK/before" -o "$WORK/$node.weights.before"
            "$B" cat "$kb" weights --cache "$WORK/after" -o "$WORK/$node.weights.after"
            printf '%-14s          weights: %s\n' "" "$(python3 "$(dirname "$0")/weights_compare.py" \
                "$WORK/$node.weights.before" "$WORK/$node.weights.after" | tail -1)"
        fi
    fi
done < "$WORK/before.keys"
exit $status
