#!/usr/bin/env bash
# train_e2e_test.sh — the training side through `flow build` on generated
# data (3 classes with their own vocabularies): source -> clean -> split ->
# terms -> bpe -> encode -> pretrain -> finetune, baseline, evaluate.
# Checks: the build and its side-by-side report; kill -9 of the build in
# the middle of pretrain (and of finetune), then a rebuild, gives the same
# weights bytes and loss curves as an uninterrupted build in a fresh cache
# (the pretrain rebuild resumes a 2-thread checkpoint on 1 thread);
# same seed gives identical loss-curve bytes, another seed
# does not; flow classify / flow eval on the model artifacts.
# Needs $FLOW (set by ctest) and python3.
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init train-e2e
flowtest_need_python3
# The kill -9 runs use flow_testhooks: the same program as $FLOW plus the
# FLOW_TEST_KILL_AT hook (tests/hooks/kill_at.c), which `flow` lacks.
flowtest_need_hooks

# ---- data: 3 departments x 6 laws x 8 articles ---------------------------
D=$T/tree
python3 "$SRC/tests/tools/gen_laws.py" "$D" 11

graph() {   # graph FILE SEED [PT_CHECKPOINT_EVERY FT_CHECKPOINT_EVERY PROFILE]
    local ckpt_pt=${3:-5} ckpt_ft=${4:-7} profile=${5:-true}
    cat > "$1" <<EOF
docs = source { path = "$D"  labels = folders }
c = clean { input = docs }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
t = terms { corpus = s.train  min_freq = 3  top_k = 5 }
tok = bpe { text = [s.train]  terms = [t]  vocab_size = 200 }
enc = encode { corpus = s  tokenizer = tok  max_len = 32 }
pt = pretrain { train = enc.train  dev = enc.dev  tokenizer = tok  terms = t  whole_term = true
                hidden = 32  layers = 1  heads = 2  intermediate = 64  max_len = 32  dropout = 0.1
                batch = 8  max_steps = 24  checkpoint_every = $ckpt_pt  dev_max = 50  lr = 0.001  seed = $2  profile = $profile }
ft = finetune { train = enc.train  dev = enc.dev  base = pt  clean = c  batch = 8  max_steps = 30
                lr = 0.003  checkpoint_every = $ckpt_ft  eval_every = 10  class_weights = balanced  profile = $profile }
base = baseline { train = s.train  dev = s.dev  test = s.test  clean = c  hash_bits = 14 }
ev = evaluate { models = [base, ft]  test = s.test }
EOF
}
graph "$T/a.graph" 5
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
part() {    # part CACHE KEY PART OUT
    "$FLOW" cat "$2" "$3" --cache "$1" > "$4"
}

# ---- 1. uninterrupted build (cache B); finetune killed once on the way ---
check "the flow binary contains no FLOW_TEST_KILL_AT hook" test "$(grep -c FLOW_TEST_KILL_AT "$FLOW")" = 0
check "flow_testhooks contains it" grep -q FLOW_TEST_KILL_AT "$HOOKED"
BIN=$HOOKED FLOW_TEST_KILL_AT=finetune:9 build "$T/a.graph" "$T/B" "$T/eb0"
rc=$?
check "the build dies at finetune step 9 (rc $rc)" test $rc -ne 0
build "$T/a.graph" "$T/B" "$T/eb"
rc=$?
check "build B succeeds (rc $rc: $(tail -3 "$T/eb.stderr"))" test $rc -eq 0
PT=$(key "$T/eb" pt); FT=$(key "$T/eb" ft); BASE=$(key "$T/eb" base)
check "pretrain has a key" test -n "$PT"
"$FLOW" log "$FT" --cache "$T/B" > "$T/ft.log" 2>&1
check "finetune resumed from its step-7 checkpoint" grep -q "resumed from the checkpoint at step 7" "$T/ft.log"
acc_base=$(metric "$T/eb" ev base.accuracy)
acc_ft=$(metric "$T/eb" ev ft.accuracy)
check "baseline accuracy $acc_base > 0.8" python3 -c "import sys; sys.exit(0 if float('$acc_base') > 0.8 else 1)"
check "fine-tuned accuracy $acc_ft > 0.5" python3 -c "import sys; sys.exit(0 if float('$acc_ft') > 0.5 else 1)"
check "dev perplexity reported" python3 -c "import sys; sys.exit(0 if float('$(metric "$T/eb0" pt dev.perplexity)') > 1 else 1)"
part "$T/B" "$(key "$T/eb" ev)" report.txt "$T/report"
check "side-by-side report" grep -q "tfidf-linear *bert-cls" "$T/report"
part "$T/B" "$PT" weights "$T/pt.B"; part "$T/B" "$PT" loss_curve.tsv "$T/curve.B"
part "$T/B" "$FT" weights "$T/ft.B"; part "$T/B" "$FT" loss_curve.tsv "$T/ftcurve.B"
check "loss curve has 24 steps" test "$(wc -l < "$T/curve.B")" = 24

# ---- 2. kill -9 in the middle of pretrain, rebuild (cache A) -------------
# the checkpoint is written on 2 threads, the rebuild resumes it on 1
BIN=$HOOKED FLOW_TEST_KILL_AT=pretrain:13 build "$T/a.graph" "$T/A" "$T/ea0"
rc=$?
check "the build dies at pretrain step 13 (rc $rc)" test $rc -ne 0
JOBS=1 build "$T/a.graph" "$T/A" "$T/ea"
rc=$?
check "rebuild A succeeds (rc $rc: $(tail -3 "$T/ea.stderr"))" test $rc -eq 0
check "same pretrain key" test "$(key "$T/ea" pt)" = "$PT"
"$FLOW" log "$PT" --cache "$T/A" > "$T/pt.log" 2>&1
"$FLOW" show "$PT" --json --cache "$T/A" > "$T/pt.meta"
check "pretrain resumed from its step-10 checkpoint" grep -q "resumed from the checkpoint at step 10" "$T/pt.log"
check "profile = true prints the kernels profiler table" grep -q "GFLOP/s" "$T/pt.log"
part "$T/A" "$PT" weights "$T/pt.A"; part "$T/A" "$PT" loss_curve.tsv "$T/curve.A"
part "$T/A" "$FT" weights "$T/ft.A"; part "$T/A" "$FT" loss_curve.tsv "$T/ftcurve.A"
check "pretrain resumed on 1 thread" python3 -c "import json,sys; sys.exit(0 if json.loads(open(sys.argv[1]).read())['threads'] == 1 else 1)" "$T/pt.meta"
check "resumed pretrain weights == uninterrupted" cmp -s "$T/pt.A" "$T/pt.B"
check "resumed pretrain loss curve == uninterrupted" cmp -s "$T/curve.A" "$T/curve.B"
check "finetune weights equal (A uninterrupted, B resumed)" cmp -s "$T/ft.A" "$T/ft.B"
check "finetune loss curves equal" cmp -s "$T/ftcurve.A" "$T/ftcurve.B"

# ---- 3. determinism: same seed -> same curve; another seed -> another ----
# The fresh build also changes checkpoint_every (none for pretrain, every 3
# steps for finetune) and profile: they are FLOW_PARAM_NOT_IN_KEY, so the
# keys stay and so must every byte.
graph "$T/c.graph" 5 0 3 false
build "$T/c.graph" "$T/C" "$T/ec" pt ft
check "checkpoint_every and profile are not in the pretrain key" test "$(key "$T/ec" pt)" = "$PT"
check "checkpoint_every and profile are not in the finetune key" test "$(key "$T/ec" ft)" = "$FT"
part "$T/C" "$PT" loss_curve.tsv "$T/curve.C"; part "$T/C" "$PT" weights "$T/pt.C"
part "$T/C" "$FT" loss_curve.tsv "$T/ftcurve.C"; part "$T/C" "$FT" weights "$T/ft.C"
check "fresh build, same seed: identical loss curve bytes" cmp -s "$T/curve.C" "$T/curve.B"
check "other checkpoint_every/profile: identical pretrain weights" cmp -s "$T/pt.C" "$T/pt.B"
check "other checkpoint_every/profile: identical finetune weights" cmp -s "$T/ft.C" "$T/ft.B"
check "other checkpoint_every/profile: identical finetune loss curve" cmp -s "$T/ftcurve.C" "$T/ftcurve.B"
graph "$T/b.graph" 6
build "$T/b.graph" "$T/C" "$T/ec2" pt
P2=$(key "$T/ec2" pt)
part "$T/C" "$P2" loss_curve.tsv "$T/curve.seed6"
check "another seed: another loss curve" test -s "$T/curve.seed6" -a -n "$(cmp "$T/curve.seed6" "$T/curve.B" 2>&1)"

# ---- 3b. pretrain on several encoded corpora (train = [a, b]) -------------
# the labelled train split plus an unlabelled plain corpus (the whole clean
# output, encoded without a split), as legal.graph does with extra/: the
# model sees every sequence of both, and a one-element list is the plain
# binding (same key, same bytes)
sed -e 's/^pt = pretrain { train = enc.train /pt = pretrain { train = [enc.train, u] /' "$T/a.graph" > "$T/m.graph"
echo 'u = encode { corpus = c  tokenizer = tok  max_len = 32 }' >> "$T/m.graph"
sed -e 's/^pt = pretrain { train = enc.train /pt = pretrain { train = [enc.train] /' "$T/a.graph" > "$T/one.graph"
build "$T/m.graph" "$T/C" "$T/em" pt u enc; rc=$?
check "pretrain on [enc.train, u] builds (rc $rc: $(tail -2 "$T/em.stderr"))" test $rc -eq 0
PM=$(key "$T/em" pt)
"$FLOW" log "$PM" --cache "$T/C" > "$T/pm.log" 2>&1
want=$(python3 -c "print(int(float('$(metric "$T/em" enc train.tokens)') + float('$(metric "$T/em" u tokens)')))")
check "pretrain trains on both corpora: $want tokens ($(grep -o 'train [0-9]* sequences ([0-9]* tokens)' "$T/pm.log"))" \
    grep -q "train [0-9]* sequences ($want tokens)" "$T/pm.log"
check "a two-corpus pretrain is another node" test "$PM" != "$PT"
build "$T/one.graph" "$T/C" "$T/e1" pt
check "train = [enc.train] is the plain binding (same key)" test "$(key "$T/e1" pt)" = "$PT"

# ---- 4. commands -----------------------------------------------------------
printf '刑罚犯罪判处徒刑拘役罚金没收自首\n税收财政预算银行货币价格审计统计\n' | "$FLOW" classify "$BASE" --cache "$T/B" > "$T/cls" 2> "$T/cls.err"
check "classify: one line per input ($(cat "$T/cls.err"))" test "$(wc -l < "$T/cls")" = 2
check "classify: labels" test "$(cut -f1 "$T/cls" | tr '\n' ' ')" = "乙类 甲类 "
"$FLOW" classify "$FT" --cache "$T/B" --all < /dev/null > "$T/cls2"
check "classify: empty input, no output" test ! -s "$T/cls2"
printf '刑罚\n\xff\xfe\n' | "$FLOW" classify "$BASE" --cache "$T/B" > "$T/cls3" 2> "$T/cls3.err"
check "classify: invalid UTF-8 is a usage error (exit 2)" test $? = 2
check "classify: invalid UTF-8 names the line and byte" grep -q "line 2: invalid UTF-8 at byte 0" "$T/cls3.err"
"$FLOW" eval "$BASE" "$D" --json --cache "$T/B" > "$T/eval.json"
check "eval --json counts every unit" python3 -c "import json,sys; d=json.load(open('$T/eval.json')); sys.exit(0 if d['n']==144 and d['accuracy']>0.8 else 1)"
"$FLOW" eval "$FT" "$D" --cache "$T/B" > "$T/eval.txt"
check "eval text output" grep -q "^accuracy .* macro-F1 .* n 144" "$T/eval.txt"
"$FLOW" export "$BASE" --format hf -o "$T/hf" --cache "$T/B" 2> "$T/export.err"
check "export refuses a tfidf model" test $? -ne 0 -a -n "$(grep tfidf "$T/export.err")"
"$FLOW" export "$FT" --format hf -o "$T/hf" --cache "$T/B" 2> "$T/export.err"
check "export of the fine-tuned model ($(cat "$T/export.err"))" test -s "$T/hf/model.safetensors" -a -s "$T/hf/config.json" -a -s "$T/hf/tokenizer.json"

if [ $fail -ne 0 ]; then echo "train_e2e_test: FAILED"; exit 1; fi
echo "train_e2e_test: all checks passed"
