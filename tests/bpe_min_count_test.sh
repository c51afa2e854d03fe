#!/bin/bash
# bpe_min_count_test.sh — bpe's bounded-memory counting and min_word_count
# end to end (issue 15), on 8,000 generated one-article files
# (tests/bench/gen_corpus.py: most pre-tokens are counted once):
#  - min_word_count = 1 written out keeps the key of a node without it
#    (key_unless_default), = 2 changes the key and the merges; its
#    metrics say how many distinct words and occurrences it left out, and
#    the alphabet is the same (characters of dropped words still count);
#  - with a budget that makes the word counter spill sorted runs to the
#    temporary folder (metric spills > 0), the five parts are the bytes of
#    the default budget, with threads = 1 and 2, and the key is the same;
#    nothing is left in the temporary folder;
#  - a budget the kept words cannot fit fails naming the node, the need
#    and the min_word_count that would fit;
#  - impossible values (0, -1, 2.5, a word) fail at graph load naming
#    the node, before anything runs;
#  - a temporary folder that fills up while spilling (a 1 MB tmpfs, when
#    mount is permitted) fails the node with the reason, leaving nothing.
set -u
FLOW=${FLOW_RELEASE:-${FLOW:?FLOW must point at the flow binary}}
SRC=$(cd "$(dirname "$0")/.." && pwd)
command -v python3 >/dev/null || { echo "skip: python3 missing"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/flow-bpemin-XXXXXX")
MNT=$T/small
trap 'umount "$MNT" 2>/dev/null; rm -rf "$T"' EXIT
fail=0

python3 "$SRC/tests/bench/gen_corpus.py" files "$T/f" 8000
graph() {   # graph NODE-SETTINGS... -> a graph with one bpe node per argument
    echo "src = source { path = \"$T/f\"  labels = folders }"
    echo "cl = clean { input = src }"
    local i=0
    for s in "$@"; do
        echo "tok$i = bpe { text = cl  vocab_size = 2000  $s }"
        i=$((i + 1))
    done
}
events() {  # events FILE -> "node status key" lines
    python3 - "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("event") == "finished":
        print(e["node"], e["status"], e["key"])
PY
}
metric() {  # metric CACHE KEY NAME
    "$FLOW" show "$2" --cache "$1" --json | python3 -c 'import json, sys; print(int(json.load(sys.stdin)["metrics"][sys.argv[1]]))' "$3"
}
key_of() { awk -v n="$1" '$1 == n {print $3}' "$2"; }

# ---- the key and the bytes -----------------------------------------------------
graph "" "min_word_count = 1" "min_word_count = 2" > "$T/a.graph"
"$FLOW" build "$T/a.graph" --cache "$T/c" -j2 --json > "$T/ea" 2> "$T/erra" ||
    { echo "FAIL: build: $(grep -o '"error":"[^"]*' "$T/ea" | head -3) $(tail -3 "$T/erra")"; exit 1; }
events "$T/ea" > "$T/na"
k0=$(key_of tok0 "$T/na"); k1=$(key_of tok1 "$T/na"); k2=$(key_of tok2 "$T/na")
[ "$k0" = "$k1" ] || { echo "FAIL: min_word_count = 1 changed the key ($k0 vs $k1)"; fail=1; }
[ "$k0" != "$k2" ] || { echo "FAIL: min_word_count = 2 kept the key"; fail=1; }
a=$("$FLOW" cat "$k0" merges.txt --cache "$T/c" | md5sum)
b=$("$FLOW" cat "$k2" merges.txt --cache "$T/c" | md5sum)
[ "$a" != "$b" ] || { echo "FAIL: min_word_count = 2 gave the same merges"; fail=1; }
u0=$(metric "$T/c" "$k0" unique_words); u2=$(metric "$T/c" "$k2" unique_words)
d0=$(metric "$T/c" "$k0" dropped_words); d2=$(metric "$T/c" "$k2" dropped_words)
o2=$(metric "$T/c" "$k2" dropped_occurrences)
echo "distinct words $u0; min_word_count = 2 left out $d2 of them ($o2 occurrences)"
[ "$u0" = "$u2" ] && [ "$d0" = 0 ] && [ "$d2" -gt $((u0 / 2)) ] && [ "$o2" = "$d2" ] ||
    { echo "FAIL: dropped words: default $d0, min 2: $d2 of $u2 ($o2 occurrences)"; fail=1; }
[ "$(metric "$T/c" "$k0" alphabet)" = "$(metric "$T/c" "$k2" alphabet)" ] ||
    { echo "FAIL: min_word_count = 2 changed the alphabet"; fail=1; }
"$FLOW" log "$k2" --cache "$T/c" 2>/dev/null | grep -q "min_word_count 2 left out $d2 distinct words with $o2 occurrences" ||
    { echo "FAIL: the log does not say what min_word_count left out"; "$FLOW" log "$k2" --cache "$T/c" | tail -5; fail=1; }
need2=$("$FLOW" show "$k2" --cache "$T/c" --json | python3 -c 'import json, math, sys; print(math.ceil(json.load(sys.stdin)["metrics"]["train_memory_mb"]))')

# ---- spilling: the same key and bytes, 1 and 2 threads ---------------------------
# the least whole MB that training from the kept words needs: the counter's
# share (half of it) is below its table of all words, so it spills
for th in 1 2; do
    graph "min_word_count = 2  memory_mb = $need2  threads = $th" > "$T/s$th.graph"
    TMPDIR=$T/tmp$th
    mkdir -p "$TMPDIR"
    TMPDIR=$TMPDIR "$FLOW" build "$T/s$th.graph" --cache "$T/cs$th" -j2 --json > "$T/es$th" 2>&1 ||
        { echo "FAIL: memory_mb = $need2 build: $(grep -o '"error":"[^"]*' "$T/es$th" | head -3)"; fail=1; continue; }
    ks=$(key_of tok0 <(events "$T/es$th"))
    [ "$ks" = "$k2" ] || { echo "FAIL: memory_mb changed the key"; fail=1; }
    sp=$(metric "$T/cs$th" "$ks" spills)
    echo "memory_mb = $need2, threads = $th: $sp sorted runs spilled"
    [ "$sp" -gt 0 ] || { echo "FAIL: memory_mb = $need2 did not spill (the test proves nothing)"; fail=1; }
    # train_memory_mb is what training holds, not the counter's table of all
    # words (which spills): the same whether it spilled or not
    m_spill=$("$FLOW" show "$ks" --cache "$T/cs$th" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["metrics"]["train_memory_mb"])')
    m_whole=$("$FLOW" show "$k2" --cache "$T/c" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["metrics"]["train_memory_mb"])')
    [ "$m_spill" = "$m_whole" ] || { echo "FAIL: train_memory_mb $m_spill after spilling, $m_whole without (threads $th)"; fail=1; }
    for p in vocab.txt merges.txt tokenizer.json tokenizer.bin chars.tsv; do
        a=$("$FLOW" cat "$k2" "$p" --cache "$T/c" | md5sum)
        b=$("$FLOW" cat "$ks" "$p" --cache "$T/cs$th" | md5sum)
        [ "$a" = "$b" ] || { echo "FAIL: part $p differs after spilling (threads $th)"; fail=1; }
    done
    [ -z "$(ls -A "$TMPDIR")" ] || { echo "FAIL: files left in the temporary folder: $(ls "$TMPDIR" | head -3)"; fail=1; }
done

# ---- a budget the kept words cannot fit ------------------------------------------
need1=$(metric "$T/c" "$k0" train_memory_mb)
small=$(( (need1 + need2) / 2 + 1 ))
graph "memory_mb = $small" > "$T/n.graph"
if "$FLOW" build "$T/n.graph" --cache "$T/cn" -j2 --json > "$T/en" 2>&1; then
    echo "FAIL: bpe with memory_mb = $small (it needs $need1) built"; fail=1
else
    msg=$(grep -o "\"error\":\"node 'tok0'[^\"]*" "$T/en" | head -1)
    case $msg in
        *"more than the memory budget of $small MB"*"set memory_mb = "*"or set min_word_count = "*)
            echo "over the budget: ${msg#\"error\":\"}" ;;
        *) echo "FAIL: no clear error suggesting min_word_count (got: $(grep -o '"error":"[^"]*' "$T/en" | head -2))"; fail=1 ;;
    esac
fi

# ---- impossible values -------------------------------------------------------------
for v in 0 -1 2.5 two; do
    graph "min_word_count = $v" > "$T/bad.graph"
    "$FLOW" build "$T/bad.graph" --cache "$T/cb" -j2 > "$T/ebad" 2>&1
    rc=$?
    if [ $rc = 0 ]; then
        echo "FAIL: min_word_count = $v built"; fail=1
    elif ! grep -q "tok0" "$T/ebad" || ! grep -q "min_word_count" "$T/ebad" || grep -q '"status":"ran"\|ran,' "$T/ebad"; then
        echo "FAIL: min_word_count = $v: no load error naming the node: $(head -3 "$T/ebad")"; fail=1
    else
        echo "min_word_count = $v: $(grep -m1 min_word_count "$T/ebad")"
    fi
done

# ---- a temporary folder that fills up while spilling -----------------------------------
mkdir -p "$MNT"
if ! mount -t tmpfs -o size=1m tmpfs "$MNT" 2>/dev/null; then
    echo "SKIP-PART: bpe_min_count_test:full-temp: mount not permitted here"
else
    graph "min_word_count = 2  memory_mb = $need2" > "$T/full.graph"
    if TMPDIR=$MNT "$FLOW" build "$T/full.graph" --cache "$T/cf" -j2 --json > "$T/ef" 2>&1; then
        echo "FAIL: spilling into a 1 MB folder succeeded"; fail=1
    else
        msg=$(grep -o "\"error\":\"node 'tok0'[^\"]*" "$T/ef" | head -1)
        case $msg in
            *"spill file in $MNT"*"No space left on device"*) echo "full temporary folder: ${msg#\"error\":\"}" ;;
            *) echo "FAIL: full temporary folder: no clear error (got: $(grep -o '"error":"[^"]*' "$T/ef" | head -2))"; fail=1 ;;
        esac
    fi
    [ -z "$(ls -A "$MNT")" ] || { echo "FAIL: files left in the full folder: $(ls "$MNT" | head -3)"; fail=1; }
fi
[ $fail = 0 ] && echo "bpe_min_count_test: ok"
exit $fail
