#!/usr/bin/env bash
# quant_model_bench.sh — flow's fp32 / int8 / 4-bit BERT classifier forward
# against PyTorch (fp32, quantize_dynamic int8) and onnxruntime (fp32,
# dynamic int8 quantization), same threads, batch 1 latency and batch 32
# throughput, reference config (hidden 768, 6 layers, 12 heads, seq 128,
# random weights), and onnxruntime running flow's own ONNX exports of the
# same fp32 / int8 / 4-bit models (stages/export: MatMulInteger with flow's
# per-row activation scales, MatMulNBits with flow's 4-bit codes).
# Ratios are computed from the lines of this one run.
#   tests/bench/quant_model_bench.sh [build-dir] [threads] [seconds] [batches]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
threads=${2:-2}
secs=${3:-3}
batches=${4:-1,32}
export OMP_WAIT_POLICY=passive
out=$(mktemp)
onnx=$(mktemp -d)
trap 'rm -rf "$out" "$onnx"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
QBENCH_ONNX_DIR="$onnx" "$build/quant_model_bench" "$threads" "$secs" "$batches" | tee -a "$out"
python3 "$here/quant_model_bench.py" --threads "$threads" --seconds "$secs" --batches "$batches" --flow-onnx "$onnx" 2>/dev/null \
  | grep '^peer' | tee -a "$out" || echo "python peers skipped"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f and f[0] == "peer":
        rows[(f[1], int(f[3]))] = float(f[9])
for B in sorted({b for _, b in rows}):
    base = rows.get(("flow-fp32", B))
    print(f"batch {B}: ms per batch (lower is better) and speed-up of flow's variants")
    for (name, b), ms in sorted(rows.items(), key=lambda kv: kv[1]):
        if b == B:
            print(f"  {name:28s} {ms:9.2f} ms")
    for q in ("flow-int8", "flow-uint4-g64"):
        if (q, B) in rows:
            for peer in ("flow-fp32", "torch-dynamic-int8", "onnxruntime-dynamic-int8", "onnxruntime-" + q,
                         "torch-fp32", "onnxruntime-fp32"):
                if (peer, B) in rows:
                    print(f"  {q} vs {peer}: {rows[(peer, B)] / rows[(q, B)]:.2f}x")
PY
