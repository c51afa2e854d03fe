#!/usr/bin/env bash
# quant_e2e_test.sh — the quantize stage through `flow build` on generated
# data (3 classes with their own vocabularies): finetune, then int8 (RTN),
# 4-bit GPTQ g32 with calibration, a keep-everything-fp32 policy, int8
# with int8 embeddings (word, position, type) and F16 scales, and 4-bit
# with uint4 embeddings, all in evaluate.  Checks: the
# policy-none model classifies exactly like its fp32 model; int8 and 4-bit
# agree with fp32 on most units and report the format, what was quantized,
# bits per weight and bytes per tensor class (flow show; the embeddings'
# bytes to the byte); every FLOW_QUANT_PATH the CPU has gives the
# same output, an unknown one is an error; impossible parameters fail at
# graph load (bits, calibration_sequences, group) or at node start (a group
# that does not divide a width, GPTQ without calibration), naming the node;
# editing the group reruns only that quantize node and what reads it.
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init quant-e2e
flowtest_need_python3

D=$T/tree
python3 "$SRC/tests/tools/gen_laws.py" "$D" 11
graph() {   # graph FILE Q4_GROUP [EXTRA NODE TEXT]
    cat > "$1" <<EOF
docs = source { path = "$D"  labels = folders }
c = clean { input = docs }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
tok = bpe { text = [s.train]  vocab_size = 200 }
enc = encode { corpus = s  tokenizer = tok  max_len = 32 }
ft = finetune { train = enc.train  dev = enc.dev  tokenizer = tok  clean = c  hidden = 64  layers = 2  heads = 2
                intermediate = 128  max_len = 32  batch = 8  max_steps = 150  lr = 0.003  eval_every = 50 }
q8 = quantize { model = ft  bits = 8  method = rtn }
q4 = quantize { model = ft  calibration = s.train  bits = 4  group = $2  method = gptq  calibration_sequences = 40 }
qnone = quantize { model = ft  policy = none  method = rtn }
q8e = quantize { model = ft  bits = 8  method = rtn  embeddings = int8  scales = f16 }
q4e = quantize { model = ft  calibration = s.train  bits = 4  group = 32  method = gptq  calibration_sequences = 40
                 embeddings = uint4  scales = f16 }
ev = evaluate { models = [ft, q8, q4, qnone, q8e, q4e]  test = s.test }
$3
EOF
}
graph "$T/a.graph" 32 ""
"$FLOW" build "$T/a.graph" --cache "$T/C" --json -j 2 > "$T/eb" 2> "$T/eb.err"
rc=$?
check "build succeeds (rc $rc: $(tail -3 "$T/eb.err"))" test $rc -eq 0
FT=$(key "$T/eb" ft); Q8=$(key "$T/eb" q8); Q4=$(key "$T/eb" q4); QN=$(key "$T/eb" qnone); Q8E=$(key "$T/eb" q8e); Q4E=$(key "$T/eb" q4e)
check "all quantize nodes built" test -n "$Q8" -a -n "$Q4" -a -n "$QN" -a -n "$Q8E" -a -n "$Q4E"
# Units of the test split as input lines.
"$FLOW" cat "$(key "$T/eb" s)" test/text --cache "$T/C" > "$T/units" 2>/dev/null
check "test units exist" test -s "$T/units"
for m in FT Q8 Q4 QN Q8E Q4E; do
  "$FLOW" classify "${!m}" --cache "$T/C" --all < "$T/units" > "$T/cls.$m" 2> "$T/cls.$m.err"
  check "classify with $m ($(head -c 300 "$T/cls.$m.err"))" test -s "$T/cls.$m"
done
check "policy none classifies exactly like fp32" cmp -s "$T/cls.FT" "$T/cls.QN"
agree() { paste "$1" "$2" | awk -F'\t' '{ n++; if ($1 == $(NF/2+1)) a++ } END { print a / n }'; }
a8=$(agree <(cut -f1 "$T/cls.FT") <(cut -f1 "$T/cls.Q8")); a4=$(agree <(cut -f1 "$T/cls.FT") <(cut -f1 "$T/cls.Q4"))
echo "top-1 agreement with fp32: int8 $a8, 4-bit GPTQ g32 $a4; fp32 predicts $(cut -f1 "$T/cls.FT" | sort -u | wc -l) distinct labels"
check "int8 agrees with fp32 on >= 90% ($a8)" python3 -c "import sys; sys.exit(0 if $a8 >= 0.9 else 1)"
check "4-bit agrees with fp32 on >= 70% ($a4)" python3 -c "import sys; sys.exit(0 if $a4 >= 0.7 else 1)"
check "int8 output differs from fp32 somewhere (really quantized)" test "$(cmp -s "$T/cls.FT" "$T/cls.Q8"; echo $?)" = 1
a8e=$(agree <(cut -f1 "$T/cls.FT") <(cut -f1 "$T/cls.Q8E"))
check "int8 + int8 embeddings + F16 scales agrees with fp32 on >= 90% ($a8e)" python3 -c "import sys; sys.exit(0 if $a8e >= 0.9 else 1)"
check "int8 embeddings change the output (really quantized)" test "$(cmp -s "$T/cls.Q8" "$T/cls.Q8E"; echo $?)" = 1
a4e=$(agree <(cut -f1 "$T/cls.FT") <(cut -f1 "$T/cls.Q4E"))
check "4-bit + uint4 embeddings agrees with fp32 on >= 70% ($a4e)" python3 -c "import sys; sys.exit(0 if $a4e >= 0.7 else 1)"
check "uint4 embeddings change the output (really quantized)" test "$(cmp -s "$T/cls.Q4" "$T/cls.Q4E"; echo $?)" = 1
metric() {  # metric SHOW-FILE NAME: a metric's value from flow show
    grep -m1 "\"$2\"" "$1" | sed 's/.*": *//; s/,$//; s/"//g'
}
"$FLOW" show "$Q8" --cache "$T/C" > "$T/show8" 2>&1
"$FLOW" show "$Q8E" --cache "$T/C" > "$T/show8e" 2>&1
check "flow show: format with F16 scales ($(metric "$T/show8e" quant.format))" grep -q "quant.format.*flow-quant v3, F16 scales" "$T/show8e"
check "flow show: report says the embeddings were quantized" grep -q "quantized: every encoder Linear weight, word/position/type embeddings (int8 per row)" "$T/show8e"
check "flow show: report says only the Linears for plain int8" grep -q "quantized: every encoder Linear weight (" "$T/show8"
check "flow show: bytes per tensor class" grep -q "embeddings .* word, position, type int8" "$T/show8e"
e8=$(metric "$T/show8e" quant.embedding_bytes); e32=$(metric "$T/show8e" quant.embedding_fp32_bytes)
# word [200, 64], position [128, 64] (model_max_len 128, of which max_len 32
# are used), type [2, 64]: 330 rows of 64 fp32 values
check "fp32 embedding bytes ($e32)" test "$e32" = $((330 * 64 * 4))
# int8: 1 byte a value + one F16 scale a row
check "int8 embeddings: 330 rows of 64 codes and an F16 scale ($e8)" test "$e8" = $((330 * (64 + 2)))
"$FLOW" show "$Q4E" --cache "$T/C" > "$T/show4e" 2>&1
e4=$(metric "$T/show4e" quant.embedding_bytes)
# uint4 g32 asymmetric: 32 bytes of codes + 2 groups x (F16 scale + U8 zero) a row
check "uint4 embeddings: 330 rows of 32 bytes, 2 F16 scales and 2 zeros ($e4)" test "$e4" = $((330 * (32 + 2 * 3)))
check "flow show: uint4 embeddings reported" grep -q "word/position/type embeddings (uint4 per row, group 32)" "$T/show4e"
"$FLOW" cat "$Q4E" weights --cache "$T/C" > "$T/w4e"; t4=$(metric "$T/show4e" quant.total_bytes)
check "uint4 embeddings: the weights part is the counted bytes plus its safetensors header ($t4)" python3 -c "
import struct, sys
b = open('$T/w4e', 'rb').read()
sys.exit(0 if len(b) == 8 + struct.unpack('<Q', b[:8])[0] + int(float('$t4')) else 1)"
check "plain int8 keeps fp32 embedding bytes" test "$(metric "$T/show8" quant.embedding_bytes)" = "$(metric "$T/show8" quant.embedding_fp32_bytes)"
b8=$(metric "$T/show8" quant.bits_per_weight); b8e=$(metric "$T/show8e" quant.bits_per_weight)
check "F16 scales: fewer bits per weight ($b8e < $b8)" python3 -c "import sys; sys.exit(0 if 8 < $b8e < $b8 else 1)"
"$FLOW" show "$Q4" --cache "$T/C" > "$T/show4" 2>&1
check "flow show: scheme" grep -q "quant.scheme.*uint4" "$T/show4"
check "flow show: bits per weight" grep -q "quant.bits_per_weight" "$T/show4"
check "flow show: bytes" grep -q "quant.encoder_linear_bytes" "$T/show4"
bpw=$(grep -m1 '"quant.bits_per_weight"' "$T/show4" | sed 's/.*: *//; s/,.*//')
check "4-bit g32 bits/weight in (4.5, 5.5) ($bpw)" python3 -c "import sys; sys.exit(0 if 4.5 < float('$bpw') < 5.5 else 1)"
# Every path this CPU has gives the same classification; a bogus one is an error.
for p in scalar avx2 avxvnni avx512vnni; do
  FLOW_QUANT_PATH=$p "$FLOW" classify "$Q4" --cache "$T/C" --all < "$T/units" > "$T/cls.p" 2> "$T/cls.p.err"
  if [ $? -eq 0 ]; then check "path $p gives the same output" cmp -s "$T/cls.p" "$T/cls.Q4"
  else check "path $p refused with a message" grep -q "cannot run here" "$T/cls.p.err"; fi
done
FLOW_QUANT_PATH=bogus "$FLOW" classify "$Q4" --cache "$T/C" < "$T/units" > /dev/null 2> "$T/bogus.err"
check "unknown FLOW_QUANT_PATH is an error" grep -q "FLOW_QUANT_PATH" "$T/bogus.err"
"$FLOW" eval "$Q8" "$D" --cache "$T/C" > "$T/eval8" 2>&1
check "flow eval runs the int8 model ($(head -c 200 "$T/eval8"))" grep -qi "accuracy" "$T/eval8"
"$FLOW" eval "$QN" "$D" --cache "$T/C" > "$T/evalN" 2>&1
"$FLOW" eval "$FT" "$D" --cache "$T/C" > "$T/evalF" 2>&1
check "flow eval: policy none = fp32" test "$(grep -i accuracy "$T/evalN")" = "$(grep -i accuracy "$T/evalF")"
# Impossible parameters at graph load (exit 2, node named, nothing built).
bad() {  # bad WHAT NODE-TEXT PATTERN
  graph "$T/bad.graph" 32 "$2"
  "$FLOW" build "$T/bad.graph" --cache "$T/C" > "$T/bad.out" 2>&1; local rc=$?
  check "$1: exit 2 ($rc)" test $rc = 2
  check "$1: message ($(head -c 300 "$T/bad.out"))" grep -q "$3" "$T/bad.out"
}
bad "bits 5" "qx = quantize { model = ft  bits = 5 }" "node 'qx': bits = 5 is not allowed"
bad "calibration 0" "qx = quantize { model = ft  calibration = s.train  calibration_sequences = 0 }" "node 'qx': calibration_sequences = 0 is out of range"
bad "group 48" "qx = quantize { model = ft  bits = 4  group = 48 }" "node 'qx': group = 48 is not allowed"
bad "scales f8" "qx = quantize { model = ft  scales = f8 }" "node 'qx'.*scales"
# At node start: group 128 does not divide hidden 64; GPTQ without calibration.
graph "$T/b.graph" 32 "qx = quantize { model = ft  bits = 4  group = 128  method = rtn }"
"$FLOW" build "$T/b.graph" --cache "$T/C" > "$T/b.out" 2>&1
check "group 128 fails at node start naming node and width ($(grep -m1 error "$T/b.out"))" grep -q "qx.*group 128 does not divide the input width 64" "$T/b.out"
graph "$T/b.graph" 32 "qx = quantize { model = ft  bits = 4 }"
"$FLOW" build "$T/b.graph" --cache "$T/C" > "$T/b.out" 2>&1
check "gptq without calibration fails naming the input" grep -q "qx.*needs the calibration input" "$T/b.out"
graph "$T/b.graph" 32 "qx = quantize { model = ft  method = rtn  policy = none  embeddings = int8 }"
"$FLOW" build "$T/b.graph" --cache "$T/C" > "$T/b.out" 2>&1
check "embeddings int8 with policy none fails naming the node" grep -q "qx.*embeddings = int8 with policy = none" "$T/b.out"
graph "$T/b.graph" 32 "qx = quantize { model = ft  method = rtn  group = 128  embeddings = uint4 }"
"$FLOW" build "$T/b.graph" --cache "$T/C" > "$T/b.out" 2>&1
check "uint4 embeddings with a group not dividing hidden fail at node start ($(grep -m1 error "$T/b.out"))" \
    grep -q "qx.*embeddings = uint4: group 128 does not divide the hidden size 64" "$T/b.out"
# Editing the group reruns only q4 and evaluate.
graph "$T/a.graph" 64 ""
"$FLOW" build "$T/a.graph" --cache "$T/C" --json -j 2 > "$T/eb2" 2> "$T/eb2.err"
ran=$(python3 - "$T/eb2" <<'EOF'
import json, sys
ran = []
for line in open(sys.argv[1]):
    try: e = json.loads(line)
    except ValueError: continue
    if e.get("event") == "finished" and e.get("status") == "ran": ran.append(e["node"])
print(" ".join(sorted(ran)))
EOF
)
check "group edit reran only q4 and ev (ran: $ran)" test "$ran" = "ev q4"
exit $fail
