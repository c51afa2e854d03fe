#!/usr/bin/env bash
# distill_e2e_test.sh — the distill stage through `flow build` on generated
# data: a fine-tuned teacher, a student of one narrower layer trained on
# soft labels, labels and hidden states (with the projection) plus an
# unlabelled corpus (a source without labels, cleaned and encoded like
# legal.graph's extra/), and a student taught by the ensemble of the
# teacher and the TF-IDF baseline.  Checks: the students are ordinary
# bert-cls artifacts (evaluate, flow eval, flow classify, flow export);
# kill -9 in the middle of distill and a rebuild on 1 thread give the same
# weights and loss curve bytes as an uninterrupted build in a fresh cache;
# bad parameters fail at node start (or at graph load) naming the node.
# Needs $FLOW, $FLOW_BUILD (flow_testhooks) and python3.
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init distill-e2e
flowtest_need_python3
flowtest_need_hooks
if [ -n "${KEEP_T:-}" ]; then rm -rf "$T"; T=$KEEP_T; KEEP=1; fi   # KEEP_T: reuse and keep that folder
python3 "$SRC/tests/tools/gen_laws.py" "$T/laws" 11
python3 "$SRC/tests/tools/gen_laws.py" "$T/extra" 12   # unlabelled: read without labels

cat > "$T/a.graph" <<EOF
docs = source { path = "$T/laws"  labels = folders }
extra = source { path = "$T/extra" }
c = clean { input = docs }
xc = clean { input = extra }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
tok = bpe { text = [s.train, xc]  vocab_size = 200 }
enc = encode { corpus = s  tokenizer = tok  max_len = 32 }
xenc = encode { corpus = xc  tokenizer = tok  max_len = 32 }
pt = pretrain { train = enc.train  dev = enc.dev  tokenizer = tok  hidden = 32  layers = 2  heads = 2
                intermediate = 64  max_len = 32  batch = 8  max_steps = 24  dev_max = 20  lr = 0.002 }
ft = finetune { train = enc.train  dev = enc.dev  base = pt  clean = c  batch = 8  max_steps = 40  lr = 0.003  class_weights = balanced }
base = baseline { train = s.train  dev = s.dev  test = s.test  clean = c  hash_bits = 14 }
small = distill { teacher = ft  train = enc.train  dev = enc.dev  unlabelled = [xenc]
                  hidden = 16  layers = 1  heads = 2  intermediate = 32  init = random
                  temperature = 2  alpha = 0.7  beta = 0.5  batch = 8  max_steps = 24  lr = 0.003
                  checkpoint_every = 5  eval_every = 8 }
ens = distill { teacher = [ft, base]  teacher_weights = [0.5, 0.5]  train = enc.train  dev = enc.dev
                train_text = s.train  unlabelled = [xenc]  unlabelled_text = [xc]  layers = 1
                alpha = 0.9  batch = 8  max_steps = 24  lr = 0.003 }
ev = evaluate { models = [base, ft, small, ens]  test = s.test }
EOF
metric() {  # metric EVENTS NODE NAME
    python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    try: e = json.loads(line)
    except ValueError: continue
    if e.get("event") == "finished" and e.get("node") == sys.argv[2]:
        print(e.get("metrics", {}).get(sys.argv[3], "missing"))
EOF
}

# ---- 1. uninterrupted build (cache B) ------------------------------------
build "$T/a.graph" "$T/B" "$T/eb"
rc=$?
check "build B succeeds (rc $rc: $(tail -3 "$T/eb.stderr"))" test $rc -eq 0
SM=$(key "$T/eb" small); EN=$(key "$T/eb" ens); FT=$(key "$T/eb" ft)
check "distill nodes have keys" test -n "$SM" -a -n "$EN"
check "the unlabelled corpus is used" test "$(metric "$T/eb" small unlabelled_sequences)" = 144
check "the student is smaller" python3 -c "import sys; sys.exit(0 if float('$(metric "$T/eb" small parameters)') < float('$(metric "$T/eb" small teacher_parameters)') else 1)"
"$FLOW" log "$SM" --cache "$T/B" > "$T/small.log" 2>&1
check "the projection is trained (log)" grep -q "with a hidden-state projection" "$T/small.log"
"$FLOW" log "$EN" --cache "$T/B" > "$T/ens.log" 2>&1
check "the ensemble has two teachers (log)" grep -q "2 teachers" "$T/ens.log"
check "ensemble student init from the teacher (log)" grep -q "copied from the teacher" "$T/ens.log"
for n in small ens; do
    acc=$(metric "$T/eb" ev $n.accuracy)
    check "evaluate scores $n ($acc)" python3 -c "import sys; sys.exit(0 if 0 <= float('$acc') <= 1 else 1)"
done
acc_ens=$(metric "$T/eb" ev ens.accuracy)
check "the ensemble-taught student learnt the classes ($acc_ens > 0.6)" python3 -c "import sys; sys.exit(0 if float('$acc_ens') > 0.6 else 1)"
"$FLOW" cat "$SM" weights --cache "$T/B" > "$T/small.B"
"$FLOW" cat "$SM" loss_curve.tsv --cache "$T/B" > "$T/curve.B"
check "24 steps in the loss curve" test "$(wc -l < "$T/curve.B")" = 24
"$FLOW" cat "$SM" model.json --cache "$T/B" > "$T/small.json"
check "an ordinary bert-cls artifact with 1 layer" python3 -c "
import json, sys
m = json.load(open('$T/small.json'))
sys.exit(0 if m['kind'] == 'bert-cls' and m['config']['layers'] == 1 and m['training']['distilled'] else 1)"
"$FLOW" eval "$SM" "$T/laws" --json --cache "$T/B" > "$T/eval.json" 2> "$T/eval.err"
check "flow eval on the student ($(cat "$T/eval.err"))" python3 -c "import json,sys; d=json.load(open('$T/eval.json')); sys.exit(0 if d['n']==144 else 1)"
printf '刑罚犯罪判处徒刑\n' | "$FLOW" classify "$EN" --cache "$T/B" > "$T/cls" 2> "$T/cls.err"
check "flow classify on the ensemble student ($(cat "$T/cls.err"))" test "$(wc -l < "$T/cls")" = 1
"$FLOW" export "$SM" --format hf -o "$T/hf" --cache "$T/B" 2> "$T/export.err"
check "flow export of the student ($(cat "$T/export.err"))" test -s "$T/hf/model.safetensors" -a -s "$T/hf/config.json"

# ---- 2. kill -9 in the middle of distill, resume on 1 thread (cache A) ---
BIN=$HOOKED FLOW_TEST_KILL_AT=distill:13 build "$T/a.graph" "$T/A" "$T/ea0" small
rc=$?
check "the build dies at distill step 13 (rc $rc)" test $rc -ne 0
JOBS=1 build "$T/a.graph" "$T/A" "$T/ea" small
rc=$?
check "rebuild A succeeds (rc $rc: $(tail -3 "$T/ea.stderr"))" test $rc -eq 0
check "same distill key" test "$(key "$T/ea" small)" = "$SM"
"$FLOW" log "$SM" --cache "$T/A" > "$T/small.A.log" 2>&1
check "distill resumed from its step-10 checkpoint" grep -q "resumed from the checkpoint at step 10" "$T/small.A.log"
"$FLOW" cat "$SM" weights --cache "$T/A" > "$T/small.A"
"$FLOW" cat "$SM" loss_curve.tsv --cache "$T/A" > "$T/curve.A"
check "resumed distill weights == uninterrupted" cmp -s "$T/small.A" "$T/small.B"
check "resumed distill loss curve == uninterrupted" cmp -s "$T/curve.A" "$T/curve.B"
# checkpoint_every and profile change how the node runs, never its bytes: not in the key
build "$T/a.graph" "$T/A" "$T/ek" small --set small.checkpoint_every=0 --set small.profile=true
check "checkpoint_every / profile leave the key alone" test "$(key "$T/ek" small)" = "$SM"

# ---- 3. bad parameters ------------------------------------------------------
bad() {     # bad NAME EXPECTED-RC MESSAGE-PATTERN NODE-BODY
    local name=$1 want=$2 pat=$3 body=$4
    { cat "$T/a.graph"; echo "$name = distill { $body }"; } > "$T/bad.graph"
    "$FLOW" build "$T/bad.graph" "$name" --cache "$T/B" -j 2 > "$T/bad.out" 2>&1
    local rc=$?
    check "$name: exit $want (got $rc)" test $rc -eq "$want"
    check "$name: message names the node and says '$pat' ($(grep -m1 "$name" "$T/bad.out"))" \
        grep -q "$name.*$pat" "$T/bad.out"
}
bad bad_alpha 2 "alpha" "teacher = ft  train = enc.train  dev = enc.dev  alpha = 1.5"
bad bad_width 1 "init = teacher needs the teacher's hidden size" "teacher = ft  train = enc.train  dev = enc.dev  hidden = 16"
bad bad_first 1 "input 'teacher' (base) is a 'tfidf-linear' model" "teacher = [base, ft]  train = enc.train  dev = enc.dev  train_text = s.train"
bad bad_weights 1 "teacher_weights has 1 entries for 2 teachers" "teacher = [ft, base]  teacher_weights = [1]  train = enc.train  dev = enc.dev  train_text = s.train"
bad bad_text 1 "bind train_text" "teacher = [ft, base]  train = enc.train  dev = enc.dev"
bad bad_single 1 "read only for an ensemble" "teacher = ft  train_text = s.train  train = enc.train  dev = enc.dev"
bad bad_textlen 1 "bind the corpus that was encoded" "teacher = [ft, base]  train = enc.train  dev = enc.dev  train_text = s.dev"
bad bad_arch 2 "student" "teacher = ft  student = ft  layers = 1  train = enc.train  dev = enc.dev"
# a student with another tokenizer (a model pretrained on another vocabulary)
cat >> "$T/a.graph" <<EOF
tok2 = bpe { text = [s.train]  vocab_size = 120 }
enc2 = encode { corpus = s  tokenizer = tok2  max_len = 32 }
pt2 = pretrain { train = enc2.train  tokenizer = tok2  hidden = 32  layers = 1  heads = 2  intermediate = 64
                 max_len = 32  batch = 8  max_steps = 2 }
EOF
bad bad_tok 1 "has another tokenizer than input 'teacher'" "teacher = ft  student = pt2  train = enc.train  dev = enc.dev"
bad bad_mlm 1 "the first teacher must be a bert-cls" "teacher = pt  train = enc.train  dev = enc.dev"

if [ $fail -ne 0 ]; then exit 1; fi
echo "distill_e2e_test: ok"
