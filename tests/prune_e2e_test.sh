#!/usr/bin/env bash
# prune_e2e_test.sh — the prune stage through `flow build` on generated
# data (3 classes): pretrain -> finetune (2 layers x 4 heads, FFN 64) ->
# prune with global, per-layer and recovery targets, and a keep-all target.
# Checks: keep-all is a byte-identical no-op (every part equals the
# finetune's); the pruned models have the asked heads / FFN neurons per
# layer in model.json and in the weights' shapes, fewer parameters (metrics
# agree with the shapes), and at least one head and neuron per layer;
# flow classify, flow eval and an evaluate node accept them; the recovery
# fine-tune writes its curves; a second prune of a pruned model works;
# one thread gives the same bytes as two; a recovery killed (-9) mid-run
# resumes to the same bytes;
# bad parameters fail at graph load (exit 2) or node start (exit 1)
# naming the node.
# Needs $FLOW (set by ctest), python3 with numpy and safetensors.
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init prune-e2e
flowtest_need_python numpy safetensors

D=$T/tree
python3 "$SRC/tests/tools/gen_laws.py" "$D" 11
mkdir -p "$T/tree2" && cp -r "$D/甲类" "$T/tree2/丁类"      # a label the model does not know
cat > "$T/g.graph" <<EOF
docs = source { path = "$D"  labels = folders }
c = clean { input = docs }
c2 = clean { input = docs2 }
docs2 = source { path = "$T/tree2"  labels = folders }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
tok = bpe { text = [s.train]  vocab_size = 200 }
enc = encode { corpus = s  tokenizer = tok  max_len = 32 }
pt = pretrain { train = enc.train  dev = enc.dev  tokenizer = tok  hidden = 32  layers = 2  heads = 4
                intermediate = 64  max_len = 32  batch = 8  max_steps = 10  dev_max = 20  lr = 0.001 }
ft = finetune { train = enc.train  dev = enc.dev  base = pt  clean = c  batch = 8  max_steps = 30  lr = 0.003 }
keep = prune { model = ft  dev = s.dev }
keep8 = prune { model = ft  dev = s.dev  heads = 8  ffn_ratio = 1.0  scope = global }
half = prune { model = ft  dev = s.dev  head_ratio = 0.5  ffn_ratio = 0.5 }
lay = prune { model = ft  calibration = s.train  dev = s.dev  heads = 1  ffn = 20  scope = layer  rounds = 2 }
rec = prune { model = ft  dev = s.dev  train = s.train  head_ratio = 0.5  ffn_ratio = 0.5  max_steps = 6  batch = 8  lr = 0.001
              checkpoint_every = 2 }
again = prune { model = half  dev = s.dev  heads = 2  ffn = 10  rounds = 1 }
ev = evaluate { models = [ft, half, lay, rec]  test = s.test }
EOF
"$FLOW" build "$T/g.graph" --cache "$T/C" --json -j 2 > "$T/ev" 2> "$T/ev.err"
check "build succeeds ($(tail -3 "$T/ev.err"))" test $? = 0
for n in ft keep keep8 half lay rec again s; do eval "K_$n=\$(key \"\$T/ev\" $n)"; done
[ -n "$K_ft" ] && [ -n "$K_half" ] && [ -n "$K_keep" ] || { echo "FAIL: no keys"; cat "$T/ev.err"; exit 1; }

# ---- keep-all: every part byte for byte
for k in keep keep8; do
    eval "kk=\$K_$k"
    "$FLOW" show "$kk" --parts --cache "$T/C" | awk '/^parts/{p=1;next} /^metadata/{p=0} p{print $NF}' > "$T/parts.$k"
    "$FLOW" show "$K_ft" --parts --cache "$T/C" | awk '/^parts/{p=1;next} /^metadata/{p=0} p{print $NF}' > "$T/parts.ft"
    check "$k has the finetune's parts" cmp -s "$T/parts.$k" "$T/parts.ft"
    check "$k has parts" test -s "$T/parts.$k"
    while read -r p; do
        "$FLOW" cat "$K_ft" "$p" --cache "$T/C" -o "$T/a" && "$FLOW" cat "$kk" "$p" --cache "$T/C" -o "$T/b"
        check "$k: part $p equals the input's byte for byte" cmp -s "$T/a" "$T/b"
    done < "$T/parts.$k"
done

# ---- pruned models: shapes, config, metrics
for k in ft half lay rec again; do
    eval "kk=\$K_$k"
    mkdir -p "$T/m/$k"
    for p in weights model.json; do "$FLOW" cat "$kk" "$p" --cache "$T/C" -o "$T/m/$k/$p"; done
done
python3 - "$T" <<'EOF' || fail=1
import json, sys
import numpy as np
from safetensors.numpy import load_file
T = sys.argv[1]
bad = 0
def fail(msg):
    global bad; bad = 1; print("FAIL:", msg)
events = {}
for l in open(T + "/ev"):
    try: e = json.loads(l)
    except ValueError: continue
    if e.get("event") == "finished": events[e["node"]] = e
def model(k):
    return json.load(open("%s/m/%s/model.json" % (T, k))), load_file("%s/m/%s/weights" % (T, k))
def shapes(k):
    j, w = model(k)
    c = j["config"]
    d = c["head_size"]
    heads, ffn = [], []
    for l in range(c["layers"]):
        p = "bert.encoder.layer.%d." % l
        a = w[p + "attention.self.query.weight"].shape[0]
        for n in ("key", "value"):
            if w[p + "attention.self.%s.weight" % n].shape[0] != a: fail("%s layer %d: q/k/v widths differ" % (k, l))
        if w[p + "attention.output.dense.weight"].shape != (c["hidden"], a): fail("%s layer %d: output dense shape" % (k, l))
        i = w[p + "intermediate.dense.weight"].shape[0]
        if w[p + "output.dense.weight"].shape != (c["hidden"], i): fail("%s layer %d: FFN output shape" % (k, l))
        heads.append(a // d); ffn.append(i)
    if heads != c["layer_heads"] or ffn != c["layer_ffn"]:
        fail("%s: weights give heads %s / FFN %s, model.json %s / %s" % (k, heads, ffn, c["layer_heads"], c["layer_ffn"]))
    if j["kind"] != "bert-cls": fail("%s: kind %s" % (k, j["kind"]))
    return heads, ffn, sum(v.size for v in w.values())
h0, f0, p0 = shapes("ft")
if h0 != [4, 4] or f0 != [64, 64]: fail("finetune shape %s %s" % (h0, f0))
want = {"half": (4, 64, None), "lay": (None, None, ([1, 1], [20, 20])), "rec": (4, 64, None), "again": (2, 10, None)}
for k, (th, tf, per) in want.items():
    h, f, p = shapes(k)
    if per and (h, f) != per: fail("%s: heads %s FFN %s, want %s" % (k, h, f, per))
    if th is not None and (sum(h) != th or sum(f) != tf): fail("%s: %d heads %d neurons, want %d %d" % (k, sum(h), sum(f), th, tf))
    if min(h) < 1 or min(f) < 1: fail("%s: a layer without heads or neurons" % k)
    if not p < p0: fail("%s: %d parameters, not fewer than %d" % (k, p, p0))
    m = events[k]["metrics"]
    if m.get("params_after") != p or m.get("heads_after") != sum(h) or m.get("ffn_after") != sum(f):
        fail("%s: metrics %s disagree with the weights (%d params, %d heads, %d neurons)" % (k, m, p, sum(h), sum(f)))
    base = "half" if k == "again" else "ft"
    if m.get("params_before") != shapes(base)[2]: fail("%s: params_before %s" % (k, m.get("params_before")))
    for l in range(2):
        if m.get("layer.%d.heads" % l) != h[l] or m.get("layer.%d.ffn" % l) != f[l]: fail("%s: per-layer metrics" % k)
        hb, fb = shapes(base)[:2]
        if m.get("layer.%d.heads_before" % l) != hb[l] or m.get("layer.%d.ffn_before" % l) != fb[l]:
            fail("%s: per-layer metrics before" % k)
    if "dev.pruned.macro_f1" not in m or "dev.input.macro_f1" not in m: fail("%s: dev metrics missing" % k)
    edit = model(k)[0]["training"]["edit"]
    if edit["heads_after"] != h or edit["ffn_before"] != shapes(base)[1]: fail("%s: training.edit %s" % (k, edit))
for k in ("half", "lay", "rec"):
    if "%s.macro_f1" % k not in events["ev"]["metrics"]: fail("evaluate did not score %s" % k)
if "dev.recovered.macro_f1" not in events["rec"]["metrics"]: fail("rec: no recovered dev metrics")
# the un-pruned tensors are the finetune's: embeddings, classifier
jf, wf = model("ft"); jh, wh = model("half")
for n in ("bert.embeddings.word_embeddings.weight", "classifier.weight", "bert.pooler.dense.weight",
          "bert.encoder.layer.0.output.LayerNorm.weight"):
    if not np.array_equal(wf[n], wh[n]): fail("half: %s changed" % n)
sys.exit(bad)
EOF
check "the recovery fine-tune wrote its loss curve" sh -c "\"$FLOW\" cat $K_rec loss_curve.tsv --cache \"$T/C\" | grep -qc ."
check "prune without recovery writes no curve" sh -c "! \"$FLOW\" cat $K_half loss_curve.tsv --cache \"$T/C\" >/dev/null 2>&1"

# ---- the pruned model is an ordinary classifier
"$FLOW" cat "$K_s" test/text --cache "$T/C" -o "$T/test.txt"
"$FLOW" classify "$K_half" --all --cache "$T/C" < "$T/test.txt" > "$T/p_half"
check "flow classify of the pruned model: one line per unit" test "$(wc -l < "$T/p_half")" = "$(wc -l < "$T/test.txt")"
"$FLOW" eval "$K_lay" "$D" --cache "$T/C" > "$T/eval" 2>&1
check "flow eval of the per-layer pruned model ($(cat "$T/eval"))" grep -q "accuracy" "$T/eval"

# ---- same bytes on one thread (the key has no thread count)
"$FLOW" build "$T/g.graph" half --cache "$T/C1" -j 1 > /dev/null 2>&1
check "half builds on one thread" test $? = 0
for p in weights model.json; do
    "$FLOW" cat "$K_half" "$p" --cache "$T/C1" -o "$T/one" 2>/dev/null
    check "half on 1 thread: $p equals the 2-thread build's" cmp -s "$T/one" "$T/m/half/$p"
done

# ---- the recovery fine-tune resumes to the same bytes after kill -9 (flow_testhooks)
HOOKED=${FLOW_BUILD:-$(dirname "$FLOW")}/flow_testhooks
if [ -x "$HOOKED" ]; then
    FLOW_TEST_KILL_AT=prune:3 "$HOOKED" build "$T/g.graph" rec --cache "$T/CK" -j 2 > "$T/kill" 2>&1
    check "the build dies at prune step 3" test $? -ne 0
    "$FLOW" build "$T/g.graph" rec --cache "$T/CK" -j 2 > "$T/resume" 2>&1
    check "the resumed build succeeds ($(tail -2 "$T/resume"))" test $? = 0
    "$FLOW" log "$K_rec" --cache "$T/CK" > "$T/rec.log" 2>&1
    check "rec resumed from its step-2 checkpoint" grep -q "resumed from the checkpoint at step 2" "$T/rec.log"
    for p in weights model.json loss_curve.tsv dev_curve.tsv; do
        "$FLOW" cat "$K_rec" "$p" --cache "$T/CK" -o "$T/r1" 2>/dev/null
        "$FLOW" cat "$K_rec" "$p" --cache "$T/C" -o "$T/r2" 2>/dev/null
        check "rec after kill -9 and resume: $p equals the uninterrupted build's" cmp -s "$T/r1" "$T/r2"
    done
else
    echo "FAIL: $HOOKED is not built"; fail=1
fi

# ---- bad parameters
bad() {  # bad NAME EXIT PATTERN BLOCK
    sed -i '/^bad = /d' "$T/g.graph"
    echo "bad = prune { $4 }" >> "$T/g.graph"
    "$FLOW" build "$T/g.graph" bad --cache "$T/C" > "$T/bad" 2>&1
    local rc=$?
    check "$1: exit $2 (got $rc: $(tail -2 "$T/bad"))" test $rc = "$2"
    check "$1: message names the node and says '$3' ($(tail -2 "$T/bad"))" grep -q "node 'bad'.*$3" "$T/bad"
}
bad "more heads than exist" 1 "heads = 9 but the model has 8 attention heads" "model = ft  dev = s.dev  heads = 9"
bad "more per-layer neurons than exist" 1 "ffn = 65 but layer 0 has 64 FFN neurons" "model = ft  dev = s.dev  ffn = 65  scope = layer"
bad "fewer heads than layers" 1 "each of the 2 layers keeps at least one" "model = ft  dev = s.dev  heads = 1"
bad "a ratio that keeps no head of a layer" 1 "keeps none of layer 0's 4 attention heads" "model = ft  dev = s.dev  head_ratio = 0.1  scope = layer"
bad "ratio 0" 2 "head_ratio" "model = ft  dev = s.dev  head_ratio = 0"
bad "ratio above 1" 2 "ffn_ratio" "model = ft  dev = s.dev  ffn_ratio = 1.5"
bad "heads and head_ratio both" 2 "give heads or head_ratio, not both" "model = ft  dev = s.dev  heads = 4  head_ratio = 0.5"
bad "a recovery option without train" 2 "lr.*train" "model = ft  dev = s.dev  head_ratio = 0.5  lr = 0.01"
bad "no calibration data" 1 "bind 'calibration' or 'dev'" "model = ft  head_ratio = 0.5"
bad "train without dev" 1 "needs 'dev'" "model = ft  calibration = s.dev  train = s.train  head_ratio = 0.5"
bad "an MLM model" 1 "bert-mlm.*bind a bert-cls model" "model = pt  dev = s.dev  head_ratio = 0.5"
bad "calibration labels the model lacks" 1 "not one of the model's" "model = ft  calibration = c2  head_ratio = 0.5"
exit $fail
