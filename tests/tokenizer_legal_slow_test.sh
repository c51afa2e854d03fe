#!/usr/bin/env bash
# tokenizer_legal_slow_test.sh — the real pipeline's HF cross-check: builds
# graphs/legal.graph up to `encoded` and `tok` (fresh temporary cache, the
# corpus taken from $FLOW_DATA/legal) and checks that the exported
# tokenizer.json, loaded by HuggingFace `tokenizers`, gives exactly the ids
# of the encode node for EVERY sequence of the test split: the test/text
# units of the split node, [CLS] + ids + [SEP], truncated to max_len.
# Both ways are checked: HF's own post-processor and truncation, and plain
# HF ids wrapped and truncated by hand (so a post-processor bug in the
# export cannot hide an encoder difference).
# Uses $FLOW_RELEASE when set (faster), else $FLOW (ctest sets it).
# Exit 77 with a reason when `tokenizers`, python3 or the corpus is missing.
# Takes ~30 s with a Debug build on 2 cores, ~1-2 min under ASan.
set -u
FLOW_BIN=${FLOW_RELEASE:-${FLOW:-}}
if [ -z "$FLOW_BIN" ] || [ ! -x "$FLOW_BIN" ]; then echo "SKIP: neither \$FLOW_RELEASE nor \$FLOW is an executable"; exit 77; fi
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
python3 -c 'import tokenizers' 2>/dev/null || { echo "SKIP: python package 'tokenizers' is not installed"; exit 77; }
SRC=${FLOW_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
legal=${FLOW_DATA:-$SRC/../shared/data}/legal
for p in laws extra terms.txt; do
    [ -e "$legal/$p" ] || { echo "SKIP: legal corpus not found: $legal/$p missing (set FLOW_DATA)"; exit 77; }
done
T=$(mktemp -d "${TMPDIR:-/tmp}/flow-toklegal-XXXXXX")
trap 'rm -rf "$T"' EXIT
MAX_LEN=512   # graphs/legal.graph: encoded.max_len
"$FLOW_BIN" build "$SRC/graphs/legal.graph" encoded tok --cache "$T/cache" -j 2 --json \
    --set "laws.path=\"$legal/laws\"" --set "extra.path=\"$legal/extra\"" \
    --set "terms_list.path=\"$legal/terms.txt\"" --set "encoded.max_len=$MAX_LEN" \
    > "$T/events" 2> "$T/stderr" || { echo "FAIL: build of legal.graph encoded tok"; tail -20 "$T/stderr"; exit 1; }
key() {
    python3 - "$T/events" "$1" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    try: e = json.loads(line)
    except ValueError: continue
    if e.get("node") == sys.argv[2] and e.get("key"): print(e["key"]); break
EOF
}
enc=$(key encoded); tok=$(key tok); split=$(key laws_split)
[ -n "$enc" ] && [ -n "$tok" ] && [ -n "$split" ] || { echo "FAIL: no key for encoded/tok/laws_split in the build events"; exit 1; }
"$FLOW_BIN" cat "$enc" test/ids --cache "$T/cache" -o "$T/test.ids" &&
"$FLOW_BIN" cat "$enc" test/offsets --cache "$T/cache" -o "$T/test.offsets" &&
"$FLOW_BIN" cat "$tok" tokenizer.json --cache "$T/cache" -o "$T/tokenizer.json" &&
"$FLOW_BIN" cat "$split" test/text --cache "$T/cache" -o "$T/test.text" || { echo "FAIL: flow cat"; exit 1; }
python3 - "$T" "$MAX_LEN" <<'EOF'
import struct, sys
from tokenizers import Tokenizer
d, max_len = sys.argv[1], int(sys.argv[2])
def part(name, magic):
    b = open(f"{d}/{name}", "rb").read()
    assert b[:8] == magic, (name, b[:8])
    ver, aux, n = struct.unpack_from("<IIQ", b, 8)
    assert ver == 1, (name, ver)
    return aux, n, b[24:]
w, nids, raw = part("test.ids", b"FLOWIDS\0")
ids = struct.unpack("<%d%s" % (nids, "H" if w == 2 else "I"), raw)
_, noff, raw = part("test.offsets", b"FLOWOFF\0")
off = struct.unpack("<%dQ" % noff, raw)
lines = open(f"{d}/test.text", encoding="utf-8").read().split("\n")[:-1]
if len(lines) != noff - 1:
    sys.exit(f"FAIL: test/text has {len(lines)} units, encoded test/offsets {noff - 1} sequences")
ours = [list(ids[off[i]:off[i + 1]]) for i in range(noff - 1)]
t = Tokenizer.from_file(f"{d}/tokenizer.json")
cls, sep = t.token_to_id("[CLS]"), t.token_to_id("[SEP]")
plain = [e.ids for e in t.encode_batch(lines, add_special_tokens=False)]
wrapped = [[cls] + p[:max_len - 2] + [sep] for p in plain]
t.enable_truncation(max_len)
hf = [e.ids for e in t.encode_batch(lines)]
bad = 0
for i, (o, a, b) in enumerate(zip(ours, wrapped, hf)):
    if o != a or o != b:
        if bad < 3:
            k = next((j for j in range(min(len(o), len(a))) if o[j] != a[j]), min(len(o), len(a)))
            print(f"mismatch in test unit {i + 1}: {lines[i][:60]!r}\n  encode: {o[max(0, k - 3):k + 5]} (len {len(o)})"
                  f"\n  HF:     {a[max(0, k - 3):k + 5]} (len {len(a)}), HF post-processed len {len(b)}")
        bad += 1
trunc = sum(len(p) > max_len - 2 for p in plain)
print(f"HF cross-check on the whole legal test split: {len(lines)} units, {nids} ids, {trunc} truncated, "
      f"{bad} mismatches")
sys.exit(1 if bad or not lines else 0)
EOF
rc=$?
[ $rc -eq 0 ] && echo "tokenizer_legal_slow_test: ok" || echo "tokenizer_legal_slow_test: FAILED"
exit $rc
