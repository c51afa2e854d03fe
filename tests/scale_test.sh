#!/bin/bash
# scale_test.sh — the cheap version of tests/bench/scale_bench.sh (issue 15):
# a return of a quadratic cost in the number of files fails the suite.
#
# Builds source -> clean -> split -> bpe -> encode on 2,000 and on 16,000
# generated one-article files (tests/bench/gen_corpus.py, every article
# distinct) and fits the growth exponent of the CPU time of each node
# (log(cpu16k / cpu2k) / log(8)): linear gives about 1.0, quadratic 2.0,
# so machine noise cannot decide it; every node must stay below 1.5.
# Nodes whose 2k CPU time is under 0.05 s are too fast to fit and are
# checked on their 16k time only (< 2 s).  Then:
#  - the null build of the 16k graph (the second: see below) takes < 1.5 s;
#  - clean and encode with memory_mb = 1 and bpe with the least budget its
#    training needs (its metric train_memory_mb, rounded up: blocks of an
#    eighth of it, several for the ~4 MB of text) (many batches, with
#    duplicates across batch boundaries) give the same bytes as with the
#    default budget;
#  - bpe with a budget its word table and merge state cannot fit fails
#    with an error naming the node, the budget and what it needs, and
#    caches nothing;
#  - the source key is the same whatever the threads that stat and hash
#    its files, and follows an edit of the last file;
#  - split streams: a 100 MB corpus is split in well under 96 MB of RSS.
set -u
FLOW=${FLOW_RELEASE:-${FLOW:?FLOW must point at the flow binary}}
SRC=$(cd "$(dirname "$0")/.." && pwd)
command -v python3 >/dev/null || { echo "skip: python3 missing"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/flow-scale-XXXXXX")
trap 'rm -rf "$T"' EXIT
fail=0

graph() {   # graph DIR MEM TOKMEM -> the pipeline graph on stdout
    cat <<EOF
src = source { path = "$1"  labels = folders }
cl = clean { input = src  memory_mb = $2 }
sp = split { corpus = cl  ratios = [0.8, 0.1, 0.1] }
tok = bpe { text = sp.train  vocab_size = 2000  memory_mb = $3 }
enc = encode { corpus = sp  tokenizer = tok  memory_mb = $2 }
EOF
}
cpu_of() {  # cpu_of EVENTS -> "node cpu_s rss_kb" lines
    python3 - "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("event") == "finished":
        print(e["node"], e.get("cpu_s", 0), e.get("peak_rss_kb", 0), e["status"], e["key"])
PY
}

for n in 2000 16000; do
    python3 "$SRC/tests/bench/gen_corpus.py" files "$T/f$n" $n
    # 40 files copied into the last label folder: duplicate units that the
    # batches of memory_mb = 1 see in a later batch than their first copy
    for i in $(seq 0 39); do cp "$T/f$n/label_0/doc_$(printf %07d $((i * 8))).md" "$T/f$n/label_7/dup_$i.md"; done
    graph "$T/f$n" 512 512 > "$T/g$n.graph"
    if ! "$FLOW" build "$T/g$n.graph" --cache "$T/c$n" -j2 --json > "$T/e$n" 2> "$T/err$n"; then
        echo "FAIL: build of $n files failed: $(tail -3 "$T/err$n")"
        exit 1
    fi
    cpu_of "$T/e$n" > "$T/cpu$n"
done
echo "node   cpu 2k  cpu 16k  exponent"
while read -r node c2 r2 s2 k2; do
    read -r _ c16 r16 s16 k16 < <(grep "^$node " "$T/cpu16000")
    python3 - "$node" "$c2" "$c16" <<'PY' || fail=1
import math, sys
node, a, b = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
if a < 0.05:
    print("%-6s %7.3f %8.3f  (too fast to fit)" % (node, a, b))
    sys.exit(0 if b < 2.0 else 1)
x = math.log(max(b, 1e-6) / a) / math.log(8)
print("%-6s %7.3f %8.3f  %5.2f%s" % (node, a, b, x, "" if x < 1.5 else "  FAIL: superlinear"))
sys.exit(0 if x < 1.5 else 1)
PY
done < "$T/cpu2000"

# null build: the second one is timed.  Files younger than the stat cache's
# racy window (2 s) when the cold build hashed them are hashed again, and
# only then cached, by the first: all 16,000 of them when generating and
# building took under 2 s (1.64 s on a loaded machine, against ~0.1 s).
"$FLOW" build "$T/g16000.graph" --cache "$T/c16000" -j2 --json > "$T/null1" 2>&1
start=$(date +%s.%N)
"$FLOW" build "$T/g16000.graph" --cache "$T/c16000" -j2 --json > "$T/null" 2>&1
end=$(date +%s.%N)
null=$(python3 -c "print(round($end - $start, 3))")
ran=$(grep -c '"status":"ran"' "$T/null")
echo "null build of 16,000 files: ${null}s, $ran nodes ran"
python3 -c "import sys; sys.exit(0 if $null < 1.5 else 1)" || { echo "FAIL: null build ${null}s >= 1.5s"; fail=1; }
ran1=$(grep -c '"status":"ran"' "$T/null1")
[ "$ran" = 0 ] && [ "$ran1" = 0 ] || { echo "FAIL: the null builds ran $ran1 and $ran nodes"; fail=1; }

# the memory budget sizes batches, never the bytes (and it is not in the key):
# clean and encode with 1 MB (batches of 256 KB / 128 KB), bpe with the
# least whole MB its word table and merge state need (blocks of an eighth)
tk=$(grep "^tok " "$T/cpu16000" | cut -d' ' -f5)
tok_mb=$("$FLOW" show "$tk" --cache "$T/c16000" --json | python3 -c 'import json, math, sys; print(math.ceil(json.load(sys.stdin)["metrics"]["train_memory_mb"]))')
echo "bpe on the 16k files needs ${tok_mb} MB (train_memory_mb, rounded up): built again with memory_mb = $tok_mb"
graph "$T/f16000" 1 "$tok_mb" > "$T/m1.graph"
"$FLOW" build "$T/m1.graph" --cache "$T/m1" -j2 --json > "$T/em1" 2>&1 || { echo "FAIL: memory_mb = 1 build: $(grep -o "\"error\":\"[^\"]*" "$T/em1" | head -3)"; fail=1; }
cpu_of "$T/em1" > "$T/cpum1"
for node in cl tok enc; do
    k512=$(grep "^$node " "$T/cpu16000" | cut -d' ' -f5)
    k1=$(grep "^$node " "$T/cpum1" | cut -d' ' -f5)
    [ "$k512" = "$k1" ] || { echo "FAIL: $node: memory_mb changed the key"; fail=1; }
done
ck=$(grep "^cl " "$T/cpu16000" | cut -d' ' -f5)
tk=$(grep "^tok " "$T/cpu16000" | cut -d' ' -f5)
ek=$(grep "^enc " "$T/cpu16000" | cut -d' ' -f5)
for p in "$ck text" "$ck units" "$ck labels" "$tk vocab.txt" "$tk merges.txt" "$tk tokenizer.bin" \
         "$ek train/ids" "$ek train/offsets" "$ek train/labels" "$ek train/groups" "$ek test/ids" \
         "$ek dev/group_names"; do
    set -- $p
    a=$("$FLOW" cat "$1" "$2" --cache "$T/c16000" | md5sum)
    b=$("$FLOW" cat "$1" "$2" --cache "$T/m1" | md5sum)
    [ "$a" = "$b" ] || { echo "FAIL: part $2 of $1 differs between memory_mb = 512 and 1"; fail=1; }
done
dups=$("$FLOW" show "$ck" --cache "$T/m1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["metrics"]["duplicates"])')
[ "$dups" = 40 ] || { echo "FAIL: clean with memory_mb = 1 found $dups duplicates, want 40"; fail=1; }

# bpe's word table and merge state must fit its budget: with 1 MB the node
# fails, naming itself, the budget and the memory_mb to set (no artifact)
graph "$T/f2000" 512 1 > "$T/tiny.graph"
if "$FLOW" build "$T/tiny.graph" --cache "$T/ctiny" -j2 --json > "$T/etiny" 2>&1; then
    echo "FAIL: bpe with memory_mb = 1 built"; fail=1
else
    msg=$(grep -o "\"error\":\"node 'tok'[^\"]*" "$T/etiny" | head -1)
    case $msg in
        *"more than the memory budget of 1 MB"*"set memory_mb = "*) echo "bpe over its budget: ${msg#\"error\":\"}" ;;
        *) echo "FAIL: bpe with memory_mb = 1: no clear error (got: $(grep -o '"error":"[^"]*' "$T/etiny" | head -2))"; fail=1 ;;
    esac
    [ "$(cpu_of "$T/etiny" | awk '$1 == "tok" {print $4}')" = failed ] || { echo "FAIL: tok did not fail"; fail=1; }
fi

# the source key does not depend on the threads that stat and hash the
# files (5,000 files in one folder: parallel past 4,096; `taskset -c 0`
# leaves one CPU, so one thread), and a change to the last file (in the
# last thread's share) changes it; its old bytes give the old key back
src_key() {     # src_key CACHE [taskset args] -> the key of node s
    local cache=$1; shift
    "$@" "$FLOW" build "$T/one.graph" --cache "$cache" -j1 --json > "$T/eone" 2>/dev/null
    cpu_of "$T/eone" | awk '$1 == "s" {print $5}'
}
python3 "$SRC/tests/bench/gen_corpus.py" files "$T/one" 5000 --labels 1
printf 's = source { path = "%s" }\n' "$T/one" > "$T/one.graph"
sleep 3     # older than the stat cache's 2-second racy window
k_par=$(src_key "$T/one1")
if command -v taskset >/dev/null; then
    k_one=$(src_key "$T/one2" taskset -c 0)
    [ -n "$k_par" ] && [ "$k_par" = "$k_one" ] || { echo "FAIL: source key with 1 CPU ($k_one) differs from all CPUs ($k_par)"; fail=1; }
else
    echo "(taskset missing: the 1-CPU source key is not compared)"
fi
last=$T/one/label_0/doc_0004999.md
cp "$last" "$T/last.md"
echo "一处修改" >> "$last"
k_mod=$(src_key "$T/one1")
[ -n "$k_mod" ] && [ "$k_mod" != "$k_par" ] || { echo "FAIL: editing the last file left the source key $k_par"; fail=1; }
cp "$T/last.md" "$last"
k_back=$(src_key "$T/one1")
[ "$k_back" = "$k_par" ] || { echo "FAIL: the last file's old bytes give key $k_back, not $k_par"; fail=1; }
[ $fail = 0 ] && echo "source key of 5,000 files: same with 1 CPU, changed by an edit, restored by its undo"

# split streams: a 100 MB corpus (96,000 units of ~1 KB, 3,000 groups,
# made by an exec node) is split with a peak RSS well under its size
# (holding the text whole took 231 MB; streaming takes ~60 MB of buffers)
cat > "$T/mkcorpus.py" <<'PY'
import random
r = random.Random(7)
words = ["合同", "当事人", "权利", "义务", "责任", "依法", "规定", "法院", "行政", "处罚", "赔偿", "登记"]
base = ["".join(r.choice(words) for _ in range(170)) for _ in range(100)]
with open("text", "w") as t, open("units", "w") as u:
    for i in range(96000):
        t.write("编号%d%s\n" % (i, base[i % 100]))
        u.write("l%d\tg%d\td%d.md\n" % (i % 4, i % 3000, i % 9000))
open("labels", "w").write("l0\nl1\nl2\nl3\n")
open("corpus.json", "w").write('{"format":"flow-corpus","version":1}\n')
PY
printf 'c = exec { command = "python3 %s/mkcorpus.py"  outputs = ["text", "units", "labels", "corpus.json"] }\ns = split { corpus = c }\n' \
    "$T" > "$T/sp.graph"
if "$FLOW" build "$T/sp.graph" --cache "$T/csp" -j2 --json > "$T/esp" 2>&1; then
    read -r _ _ sp_rss _ sp_key < <(cpu_of "$T/esp" | grep '^s ')
    read -r _ _ _ _ c_key < <(cpu_of "$T/esp" | grep '^c ')
    text_mb=$(( $("$FLOW" cat "$c_key" text --cache "$T/csp" | wc -c) / 1048576 ))
    echo "split of a ${text_mb} MB corpus: peak RSS $((sp_rss / 1024)) MB"
    [ "$text_mb" -ge 96 ] || { echo "FAIL: the generated corpus has only $text_mb MB"; fail=1; }
    if grep -qa __asan_init "$FLOW"; then
        echo "(a sanitizer build: its RSS is not the release's; set FLOW_RELEASE to check it)"
    elif [ "$sp_rss" -ge $((96 * 1024)) ]; then
        echo "FAIL: split's peak RSS $((sp_rss / 1024)) MB: it holds the corpus"; fail=1
    fi
    n=0
    for s in train dev test; do
        n=$((n + $("$FLOW" cat "$sp_key" $s/text --cache "$T/csp" | wc -l)))
    done
    [ "$n" = 96000 ] || { echo "FAIL: the splits hold $n units, want 96000"; fail=1; }
else
    echo "FAIL: split of the 100 MB corpus: $(grep -o "\"error\":\"[^\"]*" "$T/esp" | head -3)"; fail=1
fi

[ $fail = 0 ] && echo "scale_test: ok"
exit $fail
