#!/usr/bin/env bash
# cuda_module_gpu_test.sh (label gpu) — on a machine with a GPU, the CUDA
# module (libflow_cuda.so, loaded on demand by the scheduler) counts the
# devices: an exec node with gpus = 1 is granted device 0 (FLOW_GPUS and
# CUDA_VISIBLE_DEVICES = 0), --gpus 0 is accepted, and a node asking for
# more GPUs than CUDA reports is refused naming the count.  Skips (77)
# without a GPU (nvidia-smi lists none) or without the module;
# tests/cuda_module_test.sh checks the paths without one.
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init cuda-module-gpu
[ -f "$(dirname "$FLOW")/libflow_cuda.so" ] || { echo "skip: no libflow_cuda.so beside $FLOW (a build without CUDA)"; exit 77; }
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
[ "$NGPU" -gt 0 ] || { echo "skip: nvidia-smi lists no GPU"; exit 77; }
unset CUDA_VISIBLE_DEVICES FLOW_CUDA_MODULE
cd "$T"
printf 'g = exec {\n    command = "echo $FLOW_GPUS $CUDA_VISIBLE_DEVICES > o"\n    outputs = [o]\n    gpus = 1\n}\n' > g.graph
"$FLOW" build g.graph --cache c --json > b.out 2>&1; rc=$?
check "gpus = 1 builds on a machine with $NGPU GPU(s) (rc $rc: $(tail -2 b.out))" test $rc = 0
k=$(grep '"node":"g"' b.out | sed -E 's/.*"key":"([0-9a-f]*)".*/\1/')
check "the node was granted device 0 ($("$FLOW" cat "$k" o --cache c 2>&1))" test "$("$FLOW" cat "$k" o --cache c 2>/dev/null)" = "0 0"
"$FLOW" build g.graph --cache c2 --gpus 0 > b2.out 2>&1; rc=$?
check "--gpus 0 is accepted (rc $rc: $(tail -1 b2.out))" test $rc = 0
sed "s/gpus = 1/gpus = $((NGPU + 1))/" g.graph > many.graph
"$FLOW" build many.graph --cache c3 > b3.out 2>&1; rc=$?
check "asking for $((NGPU + 1)) GPUs is refused (exit 2, got $rc)" test $rc = 2
check "... naming CUDA's count" grep -q "but $NGPU .* available: CUDA reports $NGPU device" b3.out
exit $fail
