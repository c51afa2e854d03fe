#!/usr/bin/env bash
# cuda_module_test.sh — the CUDA backend is a module loaded on demand
# (engine/base/cuda_module.c, kernels/cuda/, libflow_cuda.so beside flow):
#   1. a CPU-only build never maps it (nor cuBLAS): an exec node reads its
#      worker's /proc/PID/maps (the worker is forked from the scheduler, so
#      it also shows what the scheduler loaded), and so does a graph whose
#      only GPU request is on a stage without GPU code;
#   2. a node of a stage with GPU code that asks for GPUs makes the
#      scheduler load it to count the devices before it forks (the same
#      maps check, with device = auto so the node still runs: it shows the
#      module) — the control that shows check 1 can fail;
#   3. errors, before anything runs (exit 2), naming the node: the module
#      missing (FLOW_CUDA_MODULE pointing nowhere), not a flow module, no
#      driver or no device (CUDA_VISIBLE_DEVICES= hides any GPU, so this
#      holds on any machine), --gpus naming a device CUDA does not report.
# In a build without CUDA (no libflow_cuda.so) parts 2 and the driver
# checks of 3 check the "cannot be loaded" message instead.
set -u
. "${FLOW_SRC:-$(dirname "$0")/..}/tests/tools/lib.sh"
flowtest_init cuda-module
has() { grep -qF -- "$2" "$1" || { echo "  $1 lacks: $2"; echo "  it has: $(head -c 600 "$1")"; return 1; }; }
MODULE=$(dirname "$FLOW")/libflow_cuda.so
export CUDA_VISIBLE_DEVICES=    # no device, even on a machine with GPUs
cd "$T"
printf 'one\n' > one.txt
maps_node() {   # maps_node NAME EXTRA: an exec node counting mapped CUDA libraries in its worker
    printf '%s = exec {\n    command = "grep -c -e libflow_cuda -e libcublas /proc/$PPID/maps > o; true"\n    outputs = [o]\n    %s\n}\n' "$1" "$2"
}
count() {   # count CACHE NODE: what the maps node wrote
    local k
    k=$("$FLOW" build "$3" --cache "$1" --json 2>/dev/null | grep "\"node\":\"$2\"" | sed -E 's/.*"key":"([0-9a-f]*)".*/\1/')
    "$FLOW" cat "$k" o --cache "$1" 2>/dev/null | tr -d '\n'
}

# ---- 1. CPU-only builds never map the module ---------------------------------
maps_node m "" > cpu.graph
"$FLOW" build cpu.graph --cache c1 > b1.out 2>&1; rc=$?
check "a CPU-only build succeeds ($(tail -1 b1.out))" test $rc = 0
check "a CPU-only build maps no CUDA library in its worker" test "$(count c1 m cpu.graph)" = 0
{ maps_node m ""; printf 's = source { path = "one.txt" }\nw = wordcount { input = s  gpus = 1  device = auto }\n'; } > nogpucode.graph
"$FLOW" build nogpucode.graph --cache c2 > b2.out 2>&1; rc=$?
check "a GPU request on a stage without GPU code runs on the CPU ($(tail -1 b2.out))" test $rc = 0
check "... and loads no module" test "$(count c2 m nogpucode.graph)" = 0

# ---- 2. a GPU request loads it in the scheduler, before the fork -------------------
maps_node m "gpus = 1  device = auto" > auto.graph
"$FLOW" build auto.graph --cache c3 > b3.out 2>&1; rc=$?
check "gpus = 1, device = auto, no GPU: runs on the CPU ($(tail -1 b3.out))" test $rc = 0
if [ -f "$MODULE" ]; then
    check "... with the module (and cuBLAS) mapped: the scheduler loaded it to count GPUs" \
        test "$(count c3 m auto.graph)" -gt 0
    check "... saying so, with CUDA's reason" \
        has b3.out "note: node 'm' asks for 1 GPU (gpus = 1) but 0 are available: CUDA finds no GPU on this machine (cudaGetDeviceCount"
else
    check "... saying the module cannot be loaded" has b3.out "but 0 are available: the CUDA module cannot be loaded"
fi

# ---- 3. errors before anything runs --------------------------------------------
printf 'g = exec {\n    command = "echo $FLOW_GPUS > o"\n    outputs = [o]\n    gpus = 1\n}\n' > gpu.graph
"$FLOW" build gpu.graph --cache c4 > e1.out 2>&1; rc=$?
check "gpus = 1 without a GPU fails the build (exit 2, got $rc)" test $rc = 2
if [ -f "$MODULE" ]; then
    check "... naming the node and CUDA's reason" \
        has e1.out "node 'g' asks for 1 GPU (gpus = 1) but 0 are available: CUDA finds no GPU on this machine (cudaGetDeviceCount"
else
    check "... naming the node and the module" has e1.out "node 'g' asks for 1 GPU (gpus = 1) but 0 are available: the CUDA module cannot be loaded"
fi
check "... saying nothing was built" has e1.out "nothing was built"
check "... and storing nothing" test "$("$FLOW" ls --json --cache c4 2>/dev/null | grep -c '"key"')" = 0
FLOW_CUDA_MODULE=$T/nowhere/libflow_cuda.so "$FLOW" build gpu.graph --cache c4 > e2.out 2>&1; rc=$?
check "a missing module fails the build (exit 2, got $rc)" test $rc = 2
check "... naming the node and the module's path" \
    has e2.out "node 'g' asks for 1 GPU (gpus = 1) but 0 are available: the CUDA module cannot be loaded: $T/nowhere/libflow_cuda.so: cannot open shared object file"
LIBZ=$(ldconfig -p 2>/dev/null | grep -m1 -o '/[^ ]*libz\.so\.1$')
if [ -n "$LIBZ" ]; then
    FLOW_CUDA_MODULE=$LIBZ "$FLOW" build gpu.graph --cache c4 > e3.out 2>&1; rc=$?
    check "a library that is not a flow module is refused (exit 2, got $rc)" test $rc = 2
    check "... saying so" has e3.out "$LIBZ is not a flow CUDA module of this version (no table"
fi
"$FLOW" build cpu.graph --cache c5 --gpus 0 > e4.out 2>&1; rc=$?
check "--gpus 0 without a GPU is a usage error (exit 2, got $rc)" test $rc = 2
if [ -f "$MODULE" ]; then
    check "... naming the device and CUDA's count" has e4.out "--gpus 0: there is no GPU 0 (CUDA reports 0 devices on this machine: cudaGetDeviceCount"
else
    check "... naming the module" has e4.out "--gpus 0: the CUDA module cannot be loaded"
fi
"$FLOW" build cpu.graph --cache c5 --gpus none > e5.out 2>&1
check "--gpus none builds on the CPU without the module" test "$(count c5 m cpu.graph)" = 0
exit $fail
