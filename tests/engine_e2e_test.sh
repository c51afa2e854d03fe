#!/bin/bash
# engine_e2e_test.sh — the engine through the `flow` binary, on a tiny
# generated corpus (source -> concat -> wordcount chains): incremental
# rebuilds, revert, early cutoff, status / why / dag / ls / show / cat /
# log / gc / verify, hash prefixes and exit codes.
set -u
FLOW=${FLOW:?set FLOW to the flow binary}
T=$(mktemp -d "${TMPDIR:-/tmp}/flow-e2e-XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T"
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
# expect CODE CMD...: runs CMD, checks its exit code, keeps output in $out
expect() {
    local want=$1; shift
    out=$("$@" 2>&1); local rc=$?
    [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want; output: $out"
}
contains() { case "$out" in *"$1"*) ;; *) fail "output of the last command lacks '$1': $out" ;; esac; }
# check_ran WANT GRAPH [ARGS]: the build exits 0, ends with its summary
# event (so a crash that prints no events cannot pass as "nothing ran"),
# and the sorted names of the nodes that ran (not cached) are WANT.
check_ran() {
    local want=$1; shift
    local json rc got
    json=$("$FLOW" build "$@" --json 2>"$T/check_ran.stderr"); rc=$?
    [ "$rc" = 0 ] || fail "build $*: exited $rc, expected 0: $(tail -3 "$T/check_ran.stderr")"
    case "$json" in
        *'"event":"summary"'*) ;;
        *) fail "build $*: no summary event in its output: $json" ;;
    esac
    got=$(printf '%s\n' "$json" | grep '"event":"finished"' | grep '"status":"ran"' |
        sed -E 's/.*"node":"([^"]*)".*/\1/' | sort | tr '\n' ' ' | sed 's/ $//')
    [ "$got" = "$want" ] || fail "build $*: ran '$got', expected '$want'"
}

mkdir -p data/civil data/criminal
printf 'contract law text\nsecond line\n' > data/civil/contract.md
printf 'civil code book one\n' > 'data/civil/code-book1(2020-05-28).md'
printf 'criminal law\n' > data/criminal/criminal.md
printf 'single file corpus\n' > one.txt
python3 -c "
import random
random.seed(7)
open('data/civil/random.bin', 'wb').write(bytes(random.getrandbits(8) for _ in range(6000)))"
cat > g.graph <<'EOF'
# test graph
src = source {
    path = "data"
    labels = folders
}
one = source { path = "one.txt" }
cat = concat { input = src  separator = "" }
cat1 = concat { input = one  separator = "" }
wc = wordcount { input = cat.out }
wc1 = wordcount { input = [cat1.out] }
EOF

# ---- status before anything is built: no cache gets created --------------
expect 0 "$FLOW" status g.graph
contains "src   stale       never built"
contains "cat   stale       upstream src is stale"
contains "0 of 6 nodes up to date"
expect 0 "$FLOW" why g.graph src
contains "was never built"
[ -d .flow ] && fail "status created a cache"

# ---- first build, then a null build -------------------------------------
check_ran "cat cat1 one src wc wc1" g.graph
check_ran "" g.graph
[ -d .flow ] || fail "cache .flow not created beside the graph"
# cached nodes show how long their recorded build took (text and JSON)
expect 0 "$FLOW" build g.graph
echo "$out" | grep -qE '^[0-9:]+ cached  src +[0-9a-f]{12} \(built in [0-9.]+s\)$' ||
    fail "cached src shows no '(built in ...)': $out"
"$FLOW" build g.graph --json | grep '"node":"wc"' | grep -qE '"status":"cached".*"built_s":[0-9.e-]+' ||
    fail "build --json: cached wc has no built_s"
expect 0 "$FLOW" status g.graph
contains "6 of 6 nodes up to date"

# ---- one parameter -> that node and its users only; revert -> all cached --
expect 0 "$FLOW" status g.graph --set 'cat.separator="--"'
contains 'cat   stale       parameter separator: "" -> "--"'
contains "wc    stale       upstream cat is stale"
contains "4 of 6 nodes up to date"
expect 0 "$FLOW" why g.graph cat --set 'cat.separator="--"'
contains 'parameter separator: "" -> "--"'
check_ran "cat wc" g.graph --set 'cat.separator="--"'
check_ran "" g.graph
expect 0 "$FLOW" status g.graph --set 'cat.separator="--"'
contains "6 of 6 nodes up to date"
expect 0 "$FLOW" status g.graph --json
contains '"state":"fresh"'

# ---- early cutoff: separator with a single part changes no bytes ---------
check_ran "cat1" g.graph --set 'cat1.separator="XYZ"'

# ---- editing a source file reruns its chain; status names the reason -----
printf 'criminal law, amended\n' > data/criminal/criminal.md
expect 0 "$FLOW" status g.graph
contains "src   stale       content read by the stage itself changed"
contains "cat   stale       upstream src is stale"
expect 0 "$FLOW" why g.graph wc
contains "upstream cat is stale"
printf 'new\n' > data/civil/added.md
mv data/civil/contract.md data/civil/contract.txt
expect 0 "$FLOW" why g.graph src
contains "file criminal/criminal.md: modified"
contains "file civil/added.md: added"
contains "file civil/contract.txt: added"
contains "file civil/contract.md: removed"
rm data/civil/added.md
mv data/civil/contract.txt data/civil/contract.md
check_ran "cat src wc" g.graph
# adding a hidden file changes nothing
printf 'x' > data/civil/.hidden
check_ran "" g.graph

# ---- source: index, labels, groups ---------------------------------------
key_src=$("$FLOW" build g.graph --json | grep '"node":"src"' | sed -E 's/.*"key":"([0-9a-f]*)".*/\1/')
[ ${#key_src} = 32 ] || fail "no key for src: '$key_src'"
expect 0 "$FLOW" cat "${key_src:0:8}" .index
contains "civil/code-book1(2020-05-28).md	civil	code"
contains "criminal/criminal.md	criminal	criminal"
expect 0 "$FLOW" cat "${key_src:0:6}"
contains "civil/contract.md"
expect 0 "$FLOW" cat "$key_src" civil/contract.md -o out.md
cmp -s out.md data/civil/contract.md || fail "flow cat -o wrote different bytes"
expect 2 "$FLOW" cat "$key_src" no/such/part
contains "has no part 'no/such/part'"

# include globs (a pattern without '/' matches the file name) and group_sep
printf 'm = source { path = "data"  labels = folders  include = ["*.md"]  group_sep = "" }\n' > inc.graph
key_m=$("$FLOW" build inc.graph --json | grep '"event":"finished"' | grep '"node":"m"' | sed -E 's/.*"key":"([0-9a-f]*)".*/\1/')
expect 0 "$FLOW" cat "$key_m"
case "$out" in *random.bin*) fail "include = [\"*.md\"] kept random.bin" ;; esac
contains "criminal/criminal.md"
expect 0 "$FLOW" cat "$key_m" .index
contains "civil/code-book1(2020-05-28).md	civil	code-book1"

# ---- wordcount output and metrics ----------------------------------------
key_wc1=$("$FLOW" build g.graph --json | grep '"node":"wc1"' | sed -E 's/.*"key":"([0-9a-f]*)".*/\1/')
expect 0 "$FLOW" cat "$key_wc1" counts
contains "total	3	1	19	19"
expect 0 "$FLOW" show "${key_wc1:0:10}"
contains "node     wc1 (stage wordcount"
contains '"words": 3'
expect 0 "$FLOW" show "$key_wc1" --json
contains '"key_desc":'
expect 0 "$FLOW" log "$key_wc1"

# ---- ls / dag -------------------------------------------------------------
expect 0 "$FLOW" ls
contains "wordcount"
expect 0 "$FLOW" ls --json
contains '"node":"src"'
expect 0 "$FLOW" dag g.graph
contains "wc1"
expect 0 "$FLOW" dag g.graph --dot
contains '"cat" -> "wc"'

# ---- hash prefixes --------------------------------------------------------
expect 2 "$FLOW" show abc
contains "give 6 to 32 hex digits"
expect 2 "$FLOW" show zzzzzzzz
expect 2 "$FLOW" show 000000000000
# an ambiguous prefix: find two keys sharing their first 6 digits (rare) or skip

# ---- graph errors: exit 2, file:line:col, nothing built --------------------
printf 'a = source { path = "data" }\nb = wordcount { input = [a, c] }\n' > bad.graph
expect 2 "$FLOW" build bad.graph
contains "bad.graph:2:29: error: node 'b': input 'input' refers to undefined node 'c'"
[ -d bad.flow ] && fail "a cache was created for a bad graph"
expect 2 "$FLOW" build g.graph --set wc.nope=1
contains "--set wc.nope: error:"
expect 2 "$FLOW" build g.graph no_such_target
expect 2 "$FLOW" status missing.graph
contains "not found"
expect 2 "$FLOW" frobnicate
expect 2 "$FLOW" build
# a failing node: exit 1, others still built
mkdir -p empty
printf 'e = source { path = "empty" }\nw = wordcount { input = e }\nok = source { path = "one.txt" }\n' > fail.graph
expect 1 "$FLOW" build fail.graph
contains "has no files"
expect 0 "$FLOW" status fail.graph
contains "stale       error: node 'e': source folder"
contains "stale       upstream e is stale"
contains "ok    up to date"
expect 1 "$FLOW" why fail.graph e
contains "has no files"
# source errors name the path
mkdir -p rooted/lab
printf 'a\n' > rooted/lab/in.txt
printf 'b\n' > rooted/top.txt
printf 'r = source { path = "rooted"  labels = folders }\n' > rooted.graph
expect 1 "$FLOW" build rooted.graph
contains "lie directly in"
contains "'top.txt'"
printf 'r = source { path = "rooted"  labels = folders  include = ["*/*"] }\n' > rooted.graph
expect 0 "$FLOW" build rooted.graph
printf 'm = source { path = "no/such/dir" }\n' > missing.graph
expect 1 "$FLOW" build missing.graph
contains "no/such/dir' does not exist"
expect 2 "$FLOW" dag "$T"
contains "is not a .graph file"
# a graph located by name in ./graphs
mkdir -p graphs
cp g.graph graphs/named.graph
sed -i 's|"data"|"../data"|; s|"one.txt"|"../one.txt"|' graphs/named.graph
expect 0 "$FLOW" build named
[ -d graphs/.flow ] || fail "cache for graphs/named.graph not beside it"

# ---- the README's example graph resolves as documented --------------------
if [ -n "${FLOW_SRC:-}" ] && [ -f "$FLOW_SRC/README.md" ]; then
    mkdir -p readme/graphs
    awk '/^## Graph language/{g=1} g && /^```/{n++; next} g && n==1' "$FLOW_SRC/README.md" > readme/graphs/example.graph
    expect 0 "$FLOW" dag readme/graphs/example.graph
    contains "wc     wordcount    line"
    contains "<- input=all.out"
fi

# ---- gc: only what g.graph uses now survives -------------------------------
export FLOW_GC_GRACE=0
before=$("$FLOW" ls --json | grep -c '"key"')
expect 0 "$FLOW" gc g.graph
contains "freed"
after=$("$FLOW" ls --json | grep -c '"key"')
[ "$after" = 6 ] || fail "gc kept $after artifacts (of $before), expected the 6 current ones"
check_ran "" g.graph
# --keep-last keeps the previous build of cat as well
check_ran "cat wc" g.graph --set 'cat.separator=";"'
expect 0 "$FLOW" gc g.graph --keep-last 2
after=$("$FLOW" ls --json | grep -c '"key"')
[ "$after" -ge 8 ] || fail "gc --keep-last 2 kept only $after artifacts"
expect 0 "$FLOW" gc g.graph
after=$("$FLOW" ls --json | grep -c '"key"')
[ "$after" = 6 ] || fail "gc after --keep-last kept $after, expected 6"

# ---- graph and --set errors under --json: one JSON error event, exit 2 -----
printf 'a = source { path = "one.txt" }\nb = concat { input = a  separator = 5 }\n' > bad.graph
expect 2 "$FLOW" build bad.graph --json
python3 -c '
import json, sys
lines = [l for l in sys.argv[1].splitlines() if l.strip()]
assert len(lines) == 1, lines
e = json.loads(lines[0])
assert e["event"] == "error" and e["file"].endswith("bad.graph") and e["line"] == 2, e
assert isinstance(e["col"], int) and e["col"] > 1 and "separator" in e["message"], e
' "$out" || fail "build --json on a bad graph: not one JSON error event: $out"
expect 2 "$FLOW" status bad.graph --json
python3 -c '
import json, sys
e = json.loads(sys.argv[1])
assert e["event"] == "error" and e["line"] == 2 and "separator" in e["message"], e
' "$out" || fail "status --json on a bad graph: not a JSON error event: $out"
expect 2 "$FLOW" build g.graph --json --set 'cat.nosuch=1'
python3 -c '
import json, sys
e = json.loads(sys.argv[1])
assert e["event"] == "error" and e["set"] == "cat.nosuch" and e["line"] is None and e["message"], e
' "$out" || fail "build --json with a bad --set: not a JSON error event: $out"
expect 2 "$FLOW" status g.graph --json --set 'cat.nosuch=1'
case "$out" in '{"event":"error"'*) ;; *) fail "status --json --set error is not JSON: $out" ;; esac
expect 2 "$FLOW" build g.graph nosuchnode --json
case "$out" in '{"event":"error"'*"nosuchnode"*) ;; *) fail "build --json unknown target is not JSON: $out" ;; esac

# ---- an empty graph is an error, not a silent no-op -------------------------
printf '# nothing here\n\n' > empty.graph
expect 2 "$FLOW" build empty.graph
contains "empty.graph:1:1: error: no nodes declared"
expect 2 "$FLOW" build empty.graph --json
contains '"message":"no nodes declared'

# ---- verify: clean, then damaged --------------------------------------------
expect 0 "$FLOW" verify
contains "verified"
# flip one byte inside a stored chunk: random bytes do not
# compress, so they lie verbatim in the LMDB data file
python3 - <<'EOF' || fail "could not find the random file's bytes in .flow/data.mdb"
import glob, sys
needle = open('data/civil/random.bin', 'rb').read()[1000:1064]
p = glob.glob('.flow/data.mdb')[0]
data = open(p, 'rb').read()
# every copy: LMDB may also hold stale copies in free pages
hits, i = [], data.find(needle)
while i >= 0:
    hits.append(i)
    i = data.find(needle, i + 1)
if not hits: sys.exit(1)
with open(p, 'r+b') as f:
    for i in hits:
        f.seek(i + 10); f.write(bytes([data[i + 10] ^ 0xff]))
EOF
"$FLOW" verify > verify.out 2>&1; rc=$?
case $rc in
    1) grep -q "damaged" verify.out || fail "verify exit 1 without naming the damage: $(cat verify.out)" ;;
    *) fail "verify after corruption exited $rc: $(cat verify.out)" ;;
esac


# ---- verify --repair: the damaged chunk above belongs to src and cat ---------
# A build of the same graph still reports them cached; a new dependent of cat
# fails reading it, and its message points to `flow verify --repair`.
sed 's/^wc1 = .*/wc2 = wordcount { input = [cat.out, cat1.out] }/' g.graph > g2.graph
expect 1 "$FLOW" build g2.graph wc2
contains "flow verify --repair"
expect 0 "$FLOW" gc g2.graph          # gc alone keeps the damaged artifacts (still reachable)
expect 1 "$FLOW" build g2.graph wc2
expect 0 "$FLOW" verify --repair
contains "removed artifact $key_src"
contains "removed damaged chunk"
expect 0 "$FLOW" verify
contains "verified"
# the next build rebuilds exactly the removed nodes (src, cat) and wc2
check_ran "cat src wc2" g2.graph wc2
"$FLOW" build g2.graph --json | grep '"event":"finished"' |
    sed -E 's/.*"node":"([^"]*)".*"key":"([0-9a-f]*)".*/\1 \2/' | sort > keys.repaired
"$FLOW" build g2.graph --json --cache fresh | grep '"event":"finished"' |
    sed -E 's/.*"node":"([^"]*)".*"key":"([0-9a-f]*)".*/\1 \2/' | sort > keys.fresh
[ -s keys.fresh ] && cmp -s keys.repaired keys.fresh ||
    fail "keys after repair differ from a fresh build: $(diff keys.repaired keys.fresh)"
expect 0 "$FLOW" verify --repair
contains "removed 0 artifact(s), 0 checkpoint(s) and 0 damaged chunk(s)"

# ---- GPU requests are honest (here without the CUDA module) -----------
# A GPU the build cannot give is a graph/machine error before anything runs
# (exit 2, naming the node, what it asked for and what to do); with
# `device = auto` the node runs on the CPU and says so.  --fake-gpus N is a
# test switch (pretend devices 0..N-1 exist, whatever the binary), used here
# only to reach the scheduler's paths without a GPU.  FLOW_CUDA_MODULE
# points nowhere, so the messages are those of a build without CUDA on any
# machine (tests/cuda_module_test.sh checks the module's own paths).
export FLOW_CUDA_MODULE=/nonexistent/libflow_cuda.so
nart() { "$FLOW" ls --json --cache gcache 2>/dev/null | grep -c '"key"'; }
printf 'gpu = exec {\n    command = "echo $FLOW_GPUS > o"\n    outputs = [o]\n    gpus = 2\n}\n' > gpu.graph
expect 2 "$FLOW" build gpu.graph --cache gcache --gpus none
contains "node 'gpu' asks for 2 GPUs (gpus = 2) but 0 are available: --gpus none; nothing was built"
contains "Set \`device = auto\` on it"
expect 2 "$FLOW" build gpu.graph --cache gcache
contains "node 'gpu' asks for 2 GPUs (gpus = 2) but 0 are available: the CUDA module cannot be loaded: /nonexistent/libflow_cuda.so"
expect 2 "$FLOW" build gpu.graph --cache gcache --fake-gpus 1
contains "but 1 is available: --fake-gpus 1 (a test switch); nothing was built"
contains "or ask for at most 1"
[ "$(nart)" = 0 ] || fail "a refused GPU build stored $(nart) artifact(s)"
expect 0 "$FLOW" build gpu.graph --cache gcache --fake-gpus 2
k=$("$FLOW" build gpu.graph --cache gcache --fake-gpus 2 --json | grep '"node":"gpu"' | sed -E 's/.*"key":"([0-9a-f]*)".*/\1/')
expect 0 "$FLOW" cat "$k" o --cache gcache
contains "0,1"
# --gpus LIST without the CUDA module, even if no node asks
expect 2 "$FLOW" build g.graph --gpus 0,1,2
contains "--gpus 0,1,2: the CUDA module cannot be loaded: /nonexistent/libflow_cuda.so"
contains "nothing was built"
# device = gpu on exec, on a stage without GPU code, and on pretrain
printf 'gpu = exec {\n    command = "echo x > o"\n    outputs = [o]\n    device = gpu\n}\n' > gpu1.graph
expect 2 "$FLOW" build gpu1.graph --cache gcache
contains "node 'gpu' asks for a GPU (device = gpu) but 0 are available: the CUDA module cannot be loaded"
printf 's = source { path = "one.txt" }\nw = wordcount { input = s  device = gpu }\n' > gpu2.graph
expect 2 "$FLOW" build gpu2.graph --cache gcache --fake-gpus 2
contains "node 'w' asks for a GPU (device = gpu) but stage 'wordcount' has no GPU implementation in this binary; nothing was built"
# a training node on a GPU has its own key (the CUDA backend's bytes are not
# the CPU's), so device = auto may not fall back to the CPU
printf 's = source { path = "one.txt" }\nt = bpe { text = [s] }\np = pretrain { train = s  tokenizer = t  gpus = 1  device = auto }\n' > gpu3.graph
expect 2 "$FLOW" build gpu3.graph --cache gcache --gpus none
contains "node 'p' asks for 1 GPU (gpus = 1) but 0 are available: --gpus none; nothing was built.  A training node on a GPU has its own key"
contains "use \`device = cpu\` to train on the CPU"
[ "$(nart)" = 1 ] || fail "refused GPU builds stored artifacts: $(nart), expected only gpu's"
# device = auto: the CPU, announced
printf '    device = auto\n}\n' >> gpu.graph && sed -i '5d' gpu.graph
expect 0 "$FLOW" build gpu.graph --cache gcache --gpus none
contains "note: node 'gpu' asks for 2 GPUs (gpus = 2) but 0 are available: --gpus none; it runs on the CPU (device = auto)"
printf 's = source { path = "one.txt" }\nw = wordcount { input = s  gpus = 1  device = auto }\n' > gpu4.graph
expect 0 "$FLOW" build gpu4.graph --cache gcache
contains "note: node 'w' asks for 1 GPU (gpus = 1) but stage 'wordcount' has no GPU implementation in this binary; it runs on the CPU (device = auto)"
unset FLOW_CUDA_MODULE

# ---- parameters a stage would ignore: an error, not a rerun -------------
printf 's = source { path = "one.txt"  group_sep = "_" }\n' > ign.graph
expect 2 "$FLOW" build ign.graph --cache gcache
contains "ign.graph:1:32: error: node 's': parameter 'group_sep' is used only when labels = folders"
printf 's = source { path = "data"  labels = folders }\nt = bpe { text = [s] }\np = pretrain { train = s  tokenizer = t }\nf = finetune { train = s  dev = s  base = p }\n' > ign2.graph
expect 2 "$FLOW" build ign2.graph --cache gcache --set f.hidden=512
contains "--set f.hidden: error: node 'f': parameter 'hidden' is used only when input 'base' is unbound"

# ---- an unknown option: exit 2 naming it, for every command in `flow --help`
# (under the sanitizer build a leak on that path fails the exit code too)
cmds=$("$FLOW" --help 2>&1 | sed -n '/^commands:/,/^$/s/^  \([a-z]*\) .*/\1/p')
[ "$(echo $cmds | wc -w)" -ge 15 ] || fail "flow --help lists too few commands: $cmds"
for c in $cmds; do
    expect 2 "$FLOW" "$c" --no-such-option
    contains "unknown option '--no-such-option'"
done

if [ $fails -ne 0 ]; then echo "engine_e2e_test: $fails failure(s)"; exit 1; fi
echo "engine_e2e_test: all checks passed"
