#!/usr/bin/env bash
# gpu_key_test.sh — what the key of a GPU training node holds (engine/key.c
# 'D'), checked without a GPU: a fake nvidia-smi on PATH answers the
# compute capability query, --fake-gpus grants devices, and the CUDA module
# points nowhere, so pretrain fails in its worker after the scheduler has
# computed (and reported) its key.  Checks:
#   1. the GPU architecture is in the key: compute_cap 8.6 and 9.0 give
#      two keys;
#   2. the GPU count is: gpus = 2 differs from gpus = 1, and gpus = 1 in
#      two data-parallel processes (FLOW_DP_WORLD = 2) is keyed as gpus = 2
#      (NCCL sums over 2 GPUs either way);
#   3. CPU nodes' keys do not change: the same graph without gpus gives the
#      same keys for every node with or without nvidia-smi, whatever it says
#      (the golden table checks the CPU keys' values);
#   4. the architecture cannot be told: GPUs of two architectures, no
#      nvidia-smi, a driver without compute_cap: exit 2 before anything
#      runs, naming the node and the reason;
#   5. gpus = all on a training node: exit 2 (its key needs the count).
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init gpu-key
flowtest_need_python3
export FLOW_CUDA_MODULE=/nonexistent/libflow_cuda.so
unset FLOW_DP_WORLD FLOW_DP_RANK OMPI_COMM_WORLD_SIZE PMI_SIZE
mkdir -p "$T/bin" "$T/old"
cat > "$T/bin/nvidia-smi" <<'SH'
#!/bin/sh
case "$*" in
*compute_cap*) for c in ${FAKE_CAPS:-8.6}; do echo "$c"; done ;;
*) echo "GPU 0: fake (UUID: GPU-0)" ;;
esac
SH
cat > "$T/old/nvidia-smi" <<'SH'
#!/bin/sh
echo 'Field "compute_cap" is not a valid field to query.'
exit 2
SH
chmod +x "$T/bin/nvidia-smi" "$T/old/nvidia-smi"
FAKE="$T/bin:$PATH"
# a PATH without any nvidia-smi: the tools flow and python3 need only
mkdir -p "$T/nosmi"
for t in python3 sh bash; do ln -sf "$(command -v $t)" "$T/nosmi/$t"; done
python3 "$SRC/tests/tools/gen_laws.py" "$T/tree" 11
graph() {   # graph FILE PRETRAIN_SETTINGS
    cat > "$1" <<G
docs = source { path = "$T/tree"  labels = folders }
c = clean { input = docs }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
tok = bpe { text = [s.train]  vocab_size = 200 }
enc = encode { corpus = s  tokenizer = tok  max_len = 32 }
pt = pretrain { train = enc.train  dev = enc.dev  tokenizer = tok  hidden = 16  layers = 1  heads = 2
                intermediate = 32  max_len = 32  max_steps = 2  $2 }
G
}
graph "$T/g1.graph" "gpus = 1"
graph "$T/g2.graph" "gpus = 2"
graph "$T/cpu.graph" ""
graph "$T/all.graph" "gpus = all"

# ---- 1. the architecture ------------------------------------------------------
PATH=$FAKE build "$T/g1.graph" "$T/c" "$T/e86" --fake-gpus 1
PATH=$FAKE FAKE_CAPS=9.0 build "$T/g1.graph" "$T/c" "$T/e90" --fake-gpus 1
k86=$(key "$T/e86" pt); k90=$(key "$T/e90" pt)
check "sm_86 gives a key ($k86)" test -n "$k86" -a "$k86" != None
check "sm_90 and sm_86 give different keys ($k90, $k86)" test -n "$k90" -a "$k90" != "$k86"
check "the worker got as far as the CUDA module (the key was the scheduler's)" \
    grep -q "CUDA module cannot be loaded" "$T/e86"
PATH=$FAKE FAKE_CAPS="8.6 8.6" build "$T/g1.graph" "$T/c" "$T/e86b" --fake-gpus 1
check "two sm_86 GPUs: the key of one ($(key "$T/e86b" pt))" test "$(key "$T/e86b" pt)" = "$k86"

# ---- 2. the GPU count ---------------------------------------------------------
PATH=$FAKE build "$T/g2.graph" "$T/c" "$T/e2" --fake-gpus 2
k2=$(key "$T/e2" pt)
check "gpus = 2 has its own key ($k2, gpus = 1: $k86)" test -n "$k2" -a "$k2" != "$k86"
PATH=$FAKE FLOW_DP_WORLD=2 FLOW_DP_RANK=0 FLOW_DP_RENDEZVOUS="file:$T/rdv" \
    build "$T/g1.graph" "$T/c" "$T/ew" --fake-gpus 1
check "gpus = 1 x 2 processes is keyed as 2 GPUs ($(key "$T/ew" pt), gpus = 2: $k2)" test "$(key "$T/ew" pt)" = "$k2"

# ---- 3. CPU keys unchanged ------------------------------------------------------
PATH=$T/nosmi build "$T/cpu.graph" "$T/cc" "$T/ecpu"
PATH=$FAKE FAKE_CAPS="8.6 9.0" FLOW_DP_WORLD=1 build "$T/cpu.graph" "$T/cc2" "$T/ecpu2"
for n in docs c s tok enc pt; do
    a=$(key "$T/ecpu" $n); b=$(key "$T/ecpu2" $n)
    check "CPU node $n: the same key without nvidia-smi and with mixed GPUs ($a, $b)" test -n "$a" -a "$a" = "$b"
done
check "the CPU pretrain is not a GPU one ($(key "$T/ecpu" pt))" test "$(key "$T/ecpu" pt)" != "$k86"
for n in tok enc; do
    check "upstream CPU node $n: the key of the GPU graph's" test "$(key "$T/ecpu" $n)" = "$(key "$T/e86" $n)"
done

# ---- 4. when the architecture cannot be told: exit 2, nothing runs ------------
refused() {     # refused WHAT PATH CAPS GREP
    PATH=$2 FAKE_CAPS=$3 "$FLOW" build "$T/g1.graph" --cache "$T/r" --fake-gpus 1 > "$T/r.out" 2>&1; rc=$?
    check "$1: exit 2 (got $rc: $(tail -1 "$T/r.out"))" test $rc = 2
    check "$1: says '$4' naming the node" grep -q "node 'pt' trains on a GPU.*$4" "$T/r.out"
}
refused "GPUs of two architectures" "$FAKE" "8.6 9.0" "different architectures (sm_86 and sm_90)"
refused "no nvidia-smi" "$T/nosmi" "" "nvidia-smi was not found on PATH"
refused "a driver without compute_cap" "$T/old:$PATH" "" "driver 510 or newer"
refused "nvidia-smi lists no GPU" "$FAKE" " " "listed no GPU"
check "nothing was built by the refused builds" test ! -d "$T/r/data.mdb" -o "$("$FLOW" ls --cache "$T/r" 2>/dev/null | grep -c .)" = 0

# ---- 5. gpus = all --------------------------------------------------------------
PATH=$FAKE "$FLOW" build "$T/all.graph" --cache "$T/r" --fake-gpus 2 > "$T/all.out" 2>&1; rc=$?
check "gpus = all on pretrain: exit 2 (got $rc)" test $rc = 2
check "... asking for the count" grep -q "node 'pt' asks for all GPUs (gpus = all), but a training node's key holds its GPU count.*gpus = 2" "$T/all.out"
exit $fail
