#!/bin/bash
# crash_slow_test.sh — kill -9 `flow build` at random moments, again and
# again; after each kill the cache must verify, and finally an
# uninterrupted build must give the same keys as a build in a fresh cache.
# Then Ctrl-C: exit 130, workers stopped, the next build resumes.
# Fixed seed (RANDOM=7) so the kill moments repeat run to run.
set -u
FLOW=${FLOW:?FLOW must point at the flow binary}
T=$(mktemp -d "${TMPDIR:-/tmp}/flow-crash-XXXXXX")
trap 'rm -rf "$T"' EXIT
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR" "$T/data/docs"
RANDOM=7
for i in $(seq 1 12); do
    printf 'document %d line one\nline two of %d\n' "$i" "$i" > "$T/data/docs/d$i.txt"
done
# a graph of exec and concat nodes with short sleeps: two chains that join
cat > "$T/crash.graph" <<'EOF'
docs = source { path = "data/docs" }
all = concat { input = [docs] separator = "\n" }
up = exec { in = [all.out] command = "sleep 0.05; tr a-z A-Z < {in.all.out} > up.txt" outputs = ["up.txt"] }
words = exec { in = [all.out] command = "sleep 0.08; tr ' ' '\n' < {in.all.out} | sort > words.txt" outputs = ["words.txt"] }
count = wordcount { input = [words] }
both = concat { input = [up, words] }
big = exec { in = [both.out] command = "for i in 1 2 3 4 5 6 7 8; do cat {in.both.out}; done > big.txt; sleep 0.05" outputs = ["big.txt"] }
sizes = exec { in = [big, count, up] command = "sleep 0.03; wc -c {in.big}/big.txt {in.up}/up.txt > sizes.txt" outputs = ["sizes.txt"] }
EOF
fail=0
keys() {   # node -> key from a --json build, sorted
    grep '"event":"finished"' | sed -E 's/.*"node":"([^"]*)".*"key":"([0-9a-f]*)".*/\1 \2/' | sort
}
C=$T/cache
killed=0
for round in $(seq 1 24); do
    # change one input every round so every round has work to interrupt
    echo "round $round" >> "$T/data/docs/d$(( round % 12 + 1 )).txt"
    "$FLOW" build "$T/crash.graph" --cache "$C" -j 2 > "$T/out.txt" 2>&1 &
    pid=$!
    # a random moment within the first 0.25 s (a build here takes ~0.3 s)
    sleep "0.$(printf '%03d' $(( RANDOM % 250 )))"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    grep -qs '^flow: ' "$T/out.txt" || killed=$((killed + 1))
    # workers die with their scheduler (PR_SET_PDEATHSIG); give them a moment
    sleep 0.05
    # killed before it even created the cache: nothing to verify yet
    [ -d "$C" ] || continue
    if ! "$FLOW" verify --cache "$C" > "$T/verify.txt" 2>&1; then
        echo "round $round: verify failed after kill -9:"; cat "$T/verify.txt"
        fail=1
        break
    fi
done
# an uninterrupted build completes and equals a fresh-cache build
if ! "$FLOW" build "$T/crash.graph" --cache "$C" -j 2 --json > "$T/final.json" 2> "$T/final.err"; then
    echo "final build failed:"; cat "$T/final.err"; fail=1
fi
"$FLOW" build "$T/crash.graph" --cache "$T/fresh" -j 2 --json > "$T/fresh.json" 2> "$T/fresh.err" || {
    echo "fresh build failed:"; cat "$T/fresh.err"; fail=1; }
keys < "$T/final.json" > "$T/k1"
keys < "$T/fresh.json" > "$T/k2"
if [ "$(wc -l < "$T/k1")" -ne 8 ] || ! cmp -s "$T/k1" "$T/k2"; then
    echo "keys differ between the crashed cache and a fresh one:"; diff "$T/k1" "$T/k2"; fail=1
fi
# the artifacts' bytes agree too (sizes is the sink: compare its part)
# (both reads must succeed: two identical error messages are not equal bytes)
k=$(awk '$1=="sizes"{print $2}' "$T/k1")
if [ -z "$k" ]; then
    echo "no key for node 'sizes' in the final build"; fail=1
elif ! a=$("$FLOW" cat "$k" sizes.txt --cache "$C" 2>&1) ||
     ! b=$("$FLOW" cat "$k" sizes.txt --cache "$T/fresh" 2>&1); then
    echo "flow cat of sizes.txt failed: '$a' '${b:-}'"; fail=1
else
    a=$(printf '%s' "$a" | sed "s|$T/[^ ]*||g"); b=$(printf '%s' "$b" | sed "s|$T/[^ ]*||g")
    [ -n "$a" ] && [ "$a" = "$b" ] || { echo "artifact bytes differ: '$a' vs '$b'"; fail=1; }
fi
"$FLOW" verify --cache "$C" > /dev/null 2>&1 || { echo "final verify failed"; fail=1; }
if [ "$killed" -lt 12 ]; then
    echo "only $killed of 24 kills hit a running build: the test lost its point"; fail=1
fi
leftover=$(ls "$TMPDIR" | wc -l)
# Ctrl-C: SIGINT stops the workers, exit 130, nothing partial; rerun resumes
cat > "$T/int.graph" <<'EOF'
quick = exec { command = "echo q > q.txt" outputs = ["q.txt"] }
long = exec { in = [quick] command = "sleep 20; echo l > l.txt" outputs = ["l.txt"] }
EOF
"$FLOW" build "$T/int.graph" --cache "$T/icache" -j 2 > "$T/int.txt" 2>&1 &
pid=$!
for i in $(seq 1 100); do grep -q "started long" "$T/int.txt" 2>/dev/null && break; sleep 0.05; done
kill -INT "$pid"
wait "$pid"
rc=$?
[ $rc -eq 130 ] || { echo "SIGINT: exit $rc, expected 130"; cat "$T/int.txt"; fail=1; }
grep -q "interrupted" "$T/int.txt" || { echo "SIGINT: no message"; cat "$T/int.txt"; fail=1; }
pgrep -f "sleep 20; echo l" > /dev/null && { echo "SIGINT: the command survived"; fail=1; }
"$FLOW" verify --cache "$T/icache" > /dev/null 2>&1 || { echo "SIGINT: verify failed"; fail=1; }
sed -i 's/sleep 20/sleep 0.1/' "$T/int.graph"
"$FLOW" build "$T/int.graph" --cache "$T/icache" -j 2 > "$T/int2.txt" 2>&1 || { echo "SIGINT: rerun failed"; cat "$T/int2.txt"; fail=1; }
grep -q "cached  quick" "$T/int2.txt" || { echo "SIGINT: rerun did not resume (quick not cached)"; cat "$T/int2.txt"; fail=1; }
[ "$fail" = 0 ] && echo "crash_slow_test: $killed of 24 kill -9 hit a running build, the cache verified each time, keys match a fresh build ($leftover temp folders left by killed workers)"
exit $fail
