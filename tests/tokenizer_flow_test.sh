#!/usr/bin/env bash
# tokenizer_flow_test.sh — end to end through `flow build` on a small real
# slice (two departments of laws): source -> clean -> split -> terms ->
# bpe -> encode -> coverage.  Checks the encoded parts' format and
# [CLS]/[SEP]/max_len, that coverage reports 100% forced-term integrity,
# the vocab_size and min_coverage errors, and (when the python package
# `tokenizers` is present) that the exported tokenizer.json reproduces the
# encode node's ids for the whole test split.
set -euo pipefail
FLOW=${FLOW:-}
[ -n "$FLOW" ] && [ -x "$FLOW" ] || { echo "SKIP: \$FLOW is not an executable (run through ctest)"; exit 77; }
legal=${FLOW_DATA:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data}/legal
[ -d "$legal/laws/刑法" ] || { echo "SKIP: legal corpus not found at $legal (set FLOW_DATA)"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/flow-tokflow-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir -p data/laws
cp -r "$legal/laws/刑法" "$legal/laws/社会法" data/laws/
cp "$legal/terms.txt" data/
chmod -R u+w data
cat > g.graph <<'G'
laws = source { path = "data/laws"  labels = folders }
userterms = source { path = "data/terms.txt" }
clean_laws = clean { input = laws }
split = split { corpus = clean_laws }
terms = terms { corpus = split.train  user = userterms }
tok = bpe { text = [split.train]  terms = terms  vocab_size = 2000 }
enc = encode { corpus = split  tokenizer = tok  max_len = 64 }
cov = coverage { corpus = split.test  tokenizer = tok  terms = terms  min_coverage = 0.5 }
G
"$FLOW" build g.graph -j 2 > build.txt 2>&1 || { cat build.txt; exit 1; }
grep -q "forced-term integrity ([0-9]* occurrences) *100.00%" build.txt ||
    { echo "coverage report lacks 100% forced-term integrity"; cat build.txt; exit 1; }
# a null build (everything cached) still ends with the coverage table
"$FLOW" build g.graph -j 2 > rebuild.txt 2>&1 || { cat rebuild.txt; exit 1; }
grep -q "^flow: 0 ran" rebuild.txt && grep -q "forced-term integrity ([0-9]* occurrences) *100.00%" rebuild.txt ||
    { echo "null build lacks the cached coverage report"; cat rebuild.txt; exit 1; }
"$FLOW" build g.graph --json > events.json
key() { python3 -c "import json,sys
for l in open('events.json'):
    e = json.loads(l)
    if e.get('node') == sys.argv[1] and 'key' in e: print(e['key']); break" "$1"; }
enc=$(key enc); tok=$(key tok); split=$(key split)
for p in train dev test; do
    for part in ids offsets labels groups; do "$FLOW" cat "$enc" $p/$part -o $p.$part; done
done
"$FLOW" cat "$tok" tokenizer.json -o tokenizer.json
"$FLOW" cat "$split" test/text -o test.text
"$FLOW" cat "$split" test/units -o test.units
"$FLOW" cat "$split" test/labels -o test.labelnames
"$FLOW" cat "$enc" test/label_names -o test.enc_label_names
"$FLOW" cat "$enc" test/group_names -o test.enc_group_names
python3 - <<'PY'
import struct, sys
def hdr(path, magic):
    b = open(path, 'rb').read()
    assert b[:8] == magic, (path, b[:8])
    ver, aux, n = struct.unpack_from('<IIQ', b, 8)
    assert ver == 1, (path, ver)
    return aux, n, b[24:]
for p in ('train', 'dev', 'test'):
    w, nids, ids = hdr(p + '.ids', b'FLOWIDS\0')
    assert w == 2, w
    ids = struct.unpack('<%dH' % nids, ids)
    _, noff, off = hdr(p + '.offsets', b'FLOWOFF\0')
    off = struct.unpack('<%dQ' % noff, off)
    _, nlab, lab = hdr(p + '.labels', b'FLOWLAB\0')
    _, ngrp, grp = hdr(p + '.groups', b'FLOWGRP\0')
    assert off[0] == 0 and off[-1] == nids and nlab == ngrp == noff - 1
    labs = struct.unpack('<%di' % nlab, lab)
    assert set(labs) <= {0, 1}, set(labs)
    for s in range(noff - 1):
        seq = ids[off[s]:off[s + 1]]
        assert 2 <= len(seq) <= 64 and seq[0] == 2 and seq[-1] == 3, (p, s, seq)
    units = open('test.units', encoding='utf-8').read().split('\n')[:-1] if p == 'test' else None
    if units:
        assert len(units) == noff - 1
        # label ids index the corpus labels, group ids the sorted group names
        units = [u.split('\t') for u in units]
        names = open('test.labelnames', encoding='utf-8').read().split('\n')[:-1]
        assert open('test.enc_label_names', encoding='utf-8').read().split('\n')[:-1] == names
        gn = sorted(set(u[1] for u in units if u[1]))
        assert open('test.enc_group_names', encoding='utf-8').read().split('\n')[:-1] == gn
        assert list(labs) == [names.index(u[0]) if u[0] else -1 for u in units]
        grps = struct.unpack('<%di' % ngrp, grp)
        assert list(grps) == [gn.index(u[1]) if u[1] else -1 for u in units]
print("encoded parts ok")
try:
    from tokenizers import Tokenizer
except ImportError:
    print("SKIP-PART: tokenizer_flow_test:hf-cross-check: python package tokenizers missing")
    sys.exit(0)
t = Tokenizer.from_file('tokenizer.json')
t.enable_truncation(64)
lines = open('test.text', encoding='utf-8').read().split('\n')[:-1]
_, nids, ids = hdr('test.ids', b'FLOWIDS\0')
ids = struct.unpack('<%dH' % nids, ids)
_, noff, off = hdr('test.offsets', b'FLOWOFF\0')
off = struct.unpack('<%dQ' % noff, off)
bad = sum(e.ids != list(ids[off[i]:off[i + 1]]) for i, e in enumerate(t.encode_batch(lines)))
print(f"HF cross-check: {len(lines)} units, {bad} mismatches")
sys.exit(1 if bad else 0)
PY
# impossible vocabulary: the error names every number
if "$FLOW" build g.graph --set tok.vocab_size=40 > small.txt 2>&1; then
    echo "vocab_size 40 should fail"; exit 1
fi
grep -q "vocab_size 40 is below specials 5 + forced terms [0-9]* + alphabet [0-9]* = [0-9]*" small.txt ||
    { echo "vocab_size error message:"; cat small.txt; exit 1; }
# coverage floor
if "$FLOW" build g.graph --set cov.min_coverage=0.9999 > cov.txt 2>&1; then
    echo "min_coverage 0.9999 should fail"; exit 1
fi
grep -q "is below min_coverage 0.9999" cov.txt || { cat cov.txt; exit 1; }
echo "tokenizer_flow_test: ok"
