#!/usr/bin/env bash
# vocab_edit_e2e_test.sh — trim-vocab and extend-vocab through `flow build`
# on generated data (3 classes): pretrain -> finetune -> trim-vocab (on the
# test split, so the tokens it does not use go) and extend-vocab.
# Checks: trimming drops tokens and saves embedding parameters; the trimmed
# model's probabilities on text made of kept tokens (the test split) equal
# the teacher's byte for byte (flow classify --all); HF `tokenizers` loads
# the trimmed tokenizer.json and gives flow's ids; a new term is one token
# whose embedding row is the mean of its old pieces' rows, and old text
# encodes as before; bad inputs fail naming the node.
# Needs $FLOW (set by ctest), python3 with numpy, safetensors, tokenizers.
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init vocab-e2e
flowtest_need_python numpy safetensors tokenizers

D=$T/tree
python3 "$SRC/tests/tools/gen_laws.py" "$D" 11
printf '税收财政预算\n合\n' > "$T/new_terms.txt"
cat > "$T/g.graph" <<EOF
docs = source { path = "$D"  labels = folders }
newterms = source { path = "$T/new_terms.txt" }
c = clean { input = docs }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
tok = bpe { text = [s.train]  vocab_size = 200 }
enc = encode { corpus = s  tokenizer = tok  max_len = 32 }
pt = pretrain { train = enc.train  dev = enc.dev  tokenizer = tok  hidden = 32  layers = 1  heads = 2
                intermediate = 64  max_len = 32  batch = 8  max_steps = 10  dev_max = 20  lr = 0.001 }
ft = finetune { train = enc.train  dev = enc.dev  base = pt  clean = c  batch = 8  max_steps = 12  lr = 0.003 }
trim = trim-vocab { model = ft  corpus = s.test  coverage = 1.0  tokenizer = tok }
ext = extend-vocab { model = ft  terms = [newterms] }
base = baseline { train = s.train  dev = s.dev  test = s.test  clean = c  hash_bits = 12 }
EOF
"$FLOW" build "$T/g.graph" --cache "$T/C" --json -j 2 > "$T/ev" 2> "$T/ev.err"
check "build succeeds ($(tail -3 "$T/ev.err"))" test $? = 0
FT=$(key "$T/ev" ft); TRIM=$(key "$T/ev" trim); EXT=$(key "$T/ev" ext); S=$(key "$T/ev" s)
[ -n "$FT" ] && [ -n "$TRIM" ] && [ -n "$EXT" ] || { echo "FAIL: no keys"; cat "$T/ev.err"; exit 1; }
for k in $FT $TRIM $EXT; do
    mkdir -p "$T/$k/tokenizer"
    for p in weights model.json tokenizer/tokenizer.json tokenizer/tokenizer.bin; do
        "$FLOW" cat "$k" "$p" --cache "$T/C" -o "$T/$k/$p" || { echo "FAIL: flow cat $k $p"; fail=1; }
    done
done
"$FLOW" cat "$S" test/text --cache "$T/C" -o "$T/test.txt"

# ---- trimming: fewer tokens, the same probabilities on the test split
"$FLOW" classify "$FT" --all --cache "$T/C" < "$T/test.txt" > "$T/p_ft"
"$FLOW" classify "$TRIM" --all --cache "$T/C" < "$T/test.txt" > "$T/p_trim"
check "classify gave one line per test unit" test "$(wc -l < "$T/p_ft")" = "$(wc -l < "$T/test.txt")"
check "trimmed model: identical probabilities on text of kept tokens" cmp -s "$T/p_ft" "$T/p_trim"
python3 - "$T" "$FT" "$TRIM" "$EXT" <<'EOF' || fail=1
import json, sys, numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer
T, FT, TRIM, EXT = sys.argv[1:]
bad = 0
def fail(msg):
    global bad; bad = 1; print("FAIL:", msg)
W = "bert.embeddings.word_embeddings.weight"
wf, wt, we = (load_file("%s/%s/weights" % (T, k)) for k in (FT, TRIM, EXT))
mf, mt = (json.load(open("%s/%s/model.json" % (T, k))) for k in (FT, TRIM))
vf, vt = wf[W].shape[0], wt[W].shape[0]
if not vt < vf: fail("trim kept every token (%d -> %d)" % (vf, vt))
if mt["config"]["vocab_size"] != vt: fail("model.json vocab_size %s != rows %d" % (mt["config"]["vocab_size"], vt))
tf = Tokenizer.from_file("%s/%s/tokenizer/tokenizer.json" % (T, FT))
tt = Tokenizer.from_file("%s/%s/tokenizer/tokenizer.json" % (T, TRIM))
if tt.get_vocab_size() != vt: fail("trimmed tokenizer.json has %d tokens, weights %d" % (tt.get_vocab_size(), vt))
# rows follow the tokens: the trimmed row of a token equals the teacher's row of the same text
vocf, voct = tf.get_vocab(), tt.get_vocab()
for tok, i in voct.items():
    if not np.array_equal(wt[W][i], wf[W][vocf[tok]]):
        fail("row of %r moved wrongly" % tok); break
# HF ids of the trimmed tokenizer = teacher ids mapped, on every test unit
inv_f = {i: t for t, i in vocf.items()}
lines = open(T + "/test.txt", encoding="utf-8").read().split("\n")[:-1]
if not lines: fail("no test units")
mism = 0
for l in lines:
    a = tf.encode(l, add_special_tokens=False).ids
    b = tt.encode(l, add_special_tokens=False).ids
    mism += [voct[inv_f[x]] for x in a] != b
if mism: fail("%d of %d test units encode differently with the trimmed tokenizer" % (mism, len(lines)))
# extension: '税收财政预算' is one new token whose row is the mean of its old pieces
te = Tokenizer.from_file("%s/%s/tokenizer/tokenizer.json" % (T, EXT))
term = "税收财政预算"
ids = te.encode(term, add_special_tokens=False).ids
if len(ids) != 1: fail("new term is %d tokens" % len(ids))
else:
    pieces = tf.encode(term, add_special_tokens=False).ids
    want = wf[W][pieces].mean(axis=0)
    if not np.allclose(we[W][ids[0]], want, atol=1e-6): fail("new row is not the mean of the old pieces")
    old_text = "婚姻家庭继承收养合同物权"
    a = tf.encode(old_text, add_special_tokens=False).ids
    b = te.encode(old_text, add_special_tokens=False).ids
    vocab_e = te.get_vocab()
    if [vocab_e[inv_f[x]] for x in a] != b: fail("old text encodes differently after extension")
    for tok, i in vocf.items():
        if not np.array_equal(we[W][vocab_e[tok]], wf[W][i]): fail("old row of %r changed" % tok); break
sys.exit(bad)
EOF
check "extend: one term added, one already a token" grep -qE "\"terms_added\":1[,}].*\"terms_already_single\":1|\"terms_already_single\":1[,}].*\"terms_added\":1" "$T/ev"

# ---- bad inputs fail naming the node
cat >> "$T/g.graph" <<EOF
badtrim = trim-vocab { model = base  corpus = s.test }
EOF
"$FLOW" build "$T/g.graph" badtrim --cache "$T/C" > "$T/bad" 2>&1
check "trim of a tfidf model fails" test $? = 1
check "the failure names node and kind" grep -q "badtrim.*tfidf-linear.*only bert models" "$T/bad"
sed -i 's/^badtrim = .*/badtrim = trim-vocab { model = ft  corpus = s.test  coverage = 0 }/' "$T/g.graph"
"$FLOW" build "$T/g.graph" badtrim --cache "$T/C" > "$T/bad2" 2>&1
check "coverage 0 is a graph error (exit 2)" test $? = 2
sed -i 's/^badtrim = .*/badtrim = trim-vocab { model = ft  corpus = s.test  tokenizer = tok2 }\ntok2 = bpe { text = [s.train]  vocab_size = 150 }/' "$T/g.graph"
"$FLOW" build "$T/g.graph" badtrim --cache "$T/C" > "$T/bad3" 2>&1
check "another tokenizer than the model's fails" grep -q "not the tokenizer the model was trained with" "$T/bad3"
exit $fail
