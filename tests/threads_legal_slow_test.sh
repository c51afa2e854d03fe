#!/usr/bin/env bash
# threads_legal_slow_test.sh — same key, same bytes, whatever the thread
# count.  Builds a small variant of graphs/legal.graph (the real corpus from
# $FLOW_DATA/legal; pretrain 30 steps, finetune 20, a 2-epoch baseline,
# prune in 1 round, distill 10 steps on 64 extra/ units with beta = 0.5
# (the teacher then runs per micro-batch, not once over all 15k training
# laws as with the graph's beta = 0), the report without timings; the
# rest as in the graph) into fresh caches:
#   A  -j 1                          every node on 1 thread
#   B  -j 2                          multi-threaded nodes on 2
#   C  -j 3, threads = 3 everywhere  every node on 3
#   D  pretrain killed at step 15 while on 2 threads, resumed on 1 from its
#      step-10 checkpoint; finetune likewise; the rest on 1 thread
# and checks that every node has the same key and every part the same bytes
# (XXH3-128 of the bytes read back, tests/tools/parts_digest.c) in all four
# (but the report's volatile parts, which it lists itself: host and date),
# and that the nodes really ran on the thread counts asked for.  With
# FLOW_TEST_THREADS8=1 a fifth build (-j 8, threads = 8) is compared too.
# Uses $FLOW_RELEASE when set (faster), else $FLOW; the kill runs use
# flow_testhooks from the same folder when it exists.  ~2-3 min with a
# release binary on 2 busy cores.  Exit 77 when the corpus is missing.
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
FLOW_BIN=${FLOW_RELEASE:-${FLOW:-}}
if [ -z "$FLOW_BIN" ] || [ ! -x "$FLOW_BIN" ]; then echo "SKIP: neither \$FLOW_RELEASE nor \$FLOW is an executable"; exit 77; fi
# The kill -9 runs need the FLOW_TEST_KILL_AT hook: flow_testhooks beside
# the binary when it is built (the hook then lives only there), else the binary.
HOOKED=$(dirname "$FLOW_BIN")/flow_testhooks
[ -x "$HOOKED" ] || HOOKED=$FLOW_BIN
DIGEST=${FLOW_BUILD:-}/parts_digest
[ -x "$DIGEST" ] || { echo "FAIL: $DIGEST missing (set FLOW_BUILD to the build folder)"; exit 1; }
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
SRC=${FLOW_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
legal=${FLOW_DATA:-$SRC/../shared/data}/legal
for p in laws extra terms.txt; do
    [ -e "$legal/$p" ] || { echo "SKIP: legal corpus not found: $legal/$p missing (set FLOW_DATA)"; exit 77; }
done
T=$(mktemp -d "${TMPDIR:-/tmp}/flow-threads-XXXXXX")
trap 'rm -rf "$T"' EXIT
export OMP_WAIT_POLICY=passive     # up to 8 threads on 2 shared cores
fail=0
ok() {      # ok RUN RC: the build RUN exited 0
    check "build $1 succeeds (rc $2): $(tail -2 "$T/$1.stderr") $(grep '"error"' "$T/$1.events" | head -2)" test "$2" -eq 0
}
died() {    # died RUN RC: the build RUN was killed by the test hook
    check "build $1 dies at the FLOW_TEST_KILL_AT step (rc $2)" test "$2" -ne 0
}

# the small variant: training lengths given by max_steps, so the graph's
# `epochs` lines go (a graph may not set both); paths come from --set
sed '/^ *epochs *=/d' "$SRC/graphs/legal.graph" > "$T/legal-small.graph"
NODES=$(sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\) *= *[a-z-]* *{.*/\1/p' "$T/legal-small.graph" | tr '\n' ' ')
NNODES=$(echo $NODES | wc -w)
SETS=(--set "laws.path=\"$legal/laws\"" --set "extra.path=\"$legal/extra\"" --set "terms_list.path=\"$legal/terms.txt\""
      --set pretrain.max_steps=30 --set pretrain.checkpoint_every=10 --set pretrain.dev_max=64
      --set finetune.max_steps=20 --set finetune.checkpoint_every=10 --set finetune.eval_every=10
      --set baseline.epochs=2 --set report.timing_units=0
      --set prune.rounds=1 --set distill.max_steps=10 --set distill.unlabelled_max=64
      --set distill.beta=0.5 --set report.gates=warn)
threads_everywhere() {  # threads_everywhere N: --set NODE.threads=N for every node
    for n in $NODES; do printf -- '--set\n%s.threads=%s\n' "$n" "$1"; done
}
build() {   # build RUN CACHE [ARGS...]: into cache $T/CACHE, events in $T/RUN.events
    local run=$1 cache=$2; shift 2
    # (the outer 2>/dev/null keeps bash's "Killed" note of a killed build quiet)
    { "${BIN:-$FLOW_BIN}" build "$T/legal-small.graph" --cache "$T/$cache" --json "${SETS[@]}" "$@" \
        > "$T/$run.events" 2> "$T/$run.stderr"; } 2>/dev/null
}
digest() {  # digest NAME: node key part size hash (threads column dropped) in $T/NAME.digest,
            # without the parts the report node's report.json lists as volatile (host, date)
    "$DIGEST" "$T/$1" > "$T/$1.full" || { echo "FAIL: parts_digest $1"; fail=1; }
    local rk vol
    rk=$(awk -F'\t' '$1 == "report" { print $2; exit }' "$T/$1.full")
    vol=$([ -n "$rk" ] && "$FLOW_BIN" cat "$rk" report.json --cache "$T/$1" |
          python3 -c 'import json, sys; print(" ".join(json.load(sys.stdin)["volatile_parts"]))')
    awk -F'\t' -v vol=" $vol " 'BEGIN { OFS = "\t" }
        !($1 == "report" && index(vol, " " $4 " ")) { print $1, $2, $4, $5, $6 }' "$T/$1.full" > "$T/$1.digest"
}
threads_of() {  # threads_of NAME NODE: the thread count NODE's run recorded
    awk -F'\t' -v n="$2" '$1 == n { print $3; exit }' "$T/$1.full"
}

build A A -j 1; ok A $?
build B B -j 2; ok B $?
mapfile -t T3 < <(threads_everywhere 3)
build C C -j 3 "${T3[@]}"; ok C $?

# D: checkpoints written on 2 threads, resumed on 1
BIN=$HOOKED FLOW_TEST_KILL_AT=pretrain:15 build D0 D -j 2 pretrain; died D0 $?
build D1 D -j 1 pretrain; ok D1 $?
BIN=$HOOKED FLOW_TEST_KILL_AT=finetune:15 build D2 D -j 2 finetune; died D2 $?
build D3 D -j 1; ok D3 $?

runs="A B C D"
if [ "${FLOW_TEST_THREADS8:-0}" = 1 ]; then
    mapfile -t T8 < <(threads_everywhere 8)
    build E E -j 8 "${T8[@]}"; ok E $?
    runs="$runs E"
fi
for r in $runs; do digest "$r"; done

# every node of the graph is there, with at least one part
for n in $NODES; do
    check "A has node $n" grep -q "^$n	" "$T/A.digest"
done
check "A holds one artifact per node" test "$(cut -f1,2 "$T/A.digest" | sort -u | wc -l)" -eq "$NNODES"
compare() {  # compare RUN: prints what differs from build A, per node; fails if anything does
    python3 - "$T/A.digest" "$T/$1.digest" "$1" <<'EOF'
import sys
def load(p):
    d = {}
    for line in open(p):
        node, key, part, size, h = line.rstrip("\n").split("\t")
        d.setdefault(node, [key, {}])[1][part] = (size, h)
    return d
a, b, run = load(sys.argv[1]), load(sys.argv[2]), sys.argv[3]
bad = 0
for node in sorted(set(a) | set(b)):
    if node not in a or node not in b:
        print("FAIL: node %s only in build %s" % (node, "A" if node in a else run)); bad = 1; continue
    (ka, pa), (kb, pb) = a[node], b[node]
    if ka != kb:
        print("FAIL: build %s: node %s has key %s, build A %s" % (run, node, kb, ka)); bad = 1
    for part in sorted(set(pa) | set(pb)):
        if pa.get(part) != pb.get(part):
            print("FAIL: build %s: node %s part %s: %s bytes hash %s, build A %s bytes hash %s"
                  % ((run, node, part) + (pb.get(part) or ("no", "-")) + (pa.get(part) or ("no", "-"))))
            bad = 1
sys.exit(bad)
EOF
}
for r in $runs; do
    [ "$r" = A ] && continue
    compare "$r" || fail=1
done

# the thread counts really were 1, 2, 3 (and 8)
for n in laws_clean tok encoded pretrain finetune evaluate report; do
    check "A: $n ran on 1 thread" test "$(threads_of A $n)" = 1
    check "B: $n ran on 2 threads" test "$(threads_of B $n)" = 2
    check "C: $n ran on 3 threads" test "$(threads_of C $n)" = 3
    if [ "${FLOW_TEST_THREADS8:-0}" = 1 ]; then
        check "E: $n ran on 8 threads" test "$(threads_of E $n)" = 8
    fi
done
check "C: baseline ran on 3 threads" test "$(threads_of C baseline)" = 3
PT=$(awk -F'\t' '$1 == "pretrain" { print $2; exit }' "$T/D.full")
FT=$(awk -F'\t' '$1 == "finetune" { print $2; exit }' "$T/D.full")
"$FLOW_BIN" log "$PT" --cache "$T/D" > "$T/pt.log" 2>&1
"$FLOW_BIN" log "$FT" --cache "$T/D" > "$T/ft.log" 2>&1
check "D: pretrain resumed from its step-10 checkpoint" grep -q "resumed from the checkpoint at step 10" "$T/pt.log"
check "D: finetune resumed from its step-10 checkpoint" grep -q "resumed from the checkpoint at step 10" "$T/ft.log"
check "D: pretrain finished on 1 thread" test "$(threads_of D pretrain)" = 1

if [ $fail -ne 0 ]; then echo "threads_legal_slow_test: FAILED"; exit 1; fi
echo "threads_legal_slow_test: all checks passed ($runs identical)"
