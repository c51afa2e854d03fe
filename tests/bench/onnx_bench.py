#!/usr/bin/env python3
"""onnx_bench.py — flow's forward against ONNX Runtime running flow's own
ONNX export of the same model (the deployment peer), per precision:
  fp32   flow (OpenBLAS sgemm)        vs ORT on `flow export --format onnx`
  int8   flow (kernels/quant, int8)   vs ORT on the int8 export (MatMulInteger)
  uint4  flow (kernels/quant, 4-bit)  vs ORT on the 4-bit export (MatMulNBits)
plus ORT's own dynamic int8 quantization (onnxruntime.quantization.
quantize_dynamic) of the fp32 export, the peer a user would reach for.
Same model, same threads (ORT: intra_op_num_threads, inter_op 1; flow:
OpenMP), same batch and sequence length (every token real), best of
repeats after a warm-up; flow and ORT alternate in rounds so that load on
a shared machine hits both.  Quantized weights: round to nearest of every
encoder Linear of the fp32 artifact (tests/tools/onnx_quant_tool; the
same formats and speed as quantize artifacts, which
tests/bench/quant_model_bench.sh ... ref measures end to end).

usage: onnx_bench.py [--build DIR] [--cache C --hash H]  [--threads 2]
                     [--batches 1,32] [--seq 128] [--seconds 3] [--rounds 2]
Without --hash it trains (one step) a reference-size classifier (hidden 768,
6 layers, 12 heads, FFN 3072, 128 positions) on generated text.
Prints one line per (precision, batch):
  <precision> batch B seq T threads N flow_ms X ort_ms Y ort/flow Z
Not a test (ctest does not run it).
"""
import argparse, json, os, random, shutil, subprocess, sys, tempfile, time


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--build", default=os.path.join(here, "..", "..", "build"))
    ap.add_argument("--cache")
    ap.add_argument("--hash")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--precisions", default="fp32,int8,u4g64")
    a = ap.parse_args()
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        print("onnx_bench.py: skipped (%s)" % e)
        return 77
    flow = os.path.join(a.build, "flow")
    qtool = os.path.join(a.build, "onnx_quant_tool")
    tmp = tempfile.mkdtemp(prefix="flow-onnx-bench-")
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "passive"))
    try:
        cache, key = a.cache, a.hash
        if not key:
            cache, key = train_reference(flow, tmp, env)
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        sessions = {}
        for spec in a.precisions.split(","):
            d = os.path.join(tmp, spec)
            subprocess.run([qtool, cache, key, spec, "export", d], check=True, env=env, capture_output=True)
            sessions[spec] = (ort.InferenceSession(os.path.join(d, "model.onnx"), so,
                                                   providers=["CPUExecutionProvider"]), spec)
        if "fp32" in sessions:
            from onnxruntime.quantization import quantize_dynamic, QuantType
            dyn = os.path.join(tmp, "ort-dynamic-int8.onnx")
            quantize_dynamic(os.path.join(tmp, "fp32", "model.onnx"), dyn, weight_type=QuantType.QInt8)
            sessions["ort-dynamic-int8"] = (ort.InferenceSession(dyn, so, providers=["CPUExecutionProvider"]), "int8")
        V = json.loads(subprocess.run([flow, "cat", key, "model.json", "--cache", cache], capture_output=True,
                                      check=True, text=True).stdout)["config"]["vocab_size"]
        rng = np.random.default_rng(1)
        print("# threads %d, seq %d, load average %.1f at start" % (a.threads, a.seq, os.getloadavg()[0]))
        for B in [int(x) for x in a.batches.split(",")]:
            ids = rng.integers(5, V, size=(B, a.seq), dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            for name, (sess, flow_spec) in sessions.items():
                best_f, best_o = 1e30, 1e30
                for _ in range(a.rounds):
                    r = subprocess.run([qtool, cache, key, flow_spec, "time", str(B), str(a.seq), str(a.threads),
                                        str(a.seconds / a.rounds)], capture_output=True, text=True, env=env,
                                       check=True)
                    best_f = min(best_f, float(r.stdout.split("ms_per_batch")[1]))
                    best_o = min(best_o, timeit(lambda: sess.run(None, feed), a.seconds / a.rounds) * 1e3)
                print("%s batch %d seq %d threads %d flow_%s_ms %.2f ort_ms %.2f ort/flow %.2f"
                      % (name, B, a.seq, a.threads, flow_spec, best_f, best_o, best_o / best_f), flush=True)
        print("# load average %.1f at the end" % os.getloadavg()[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def timeit(fn, seconds):
    fn()
    best, start, n = 1e30, time.perf_counter(), 0
    while n < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        n += 1
    return best


def train_reference(flow, tmp, env):
    """a reference-size classifier: random init + one fine-tuning step"""
    random.seed(3)
    for lab, chars in {"a": "税收财政预算银行货币价格审计统计会计金融", "b": "刑罚犯罪判处徒刑拘役罚金没收自首缓刑剥夺"}.items():
        os.makedirs(os.path.join(tmp, "tree", lab))
        for k in range(4):
            with open(os.path.join(tmp, "tree", lab, "%d.md" % k), "w") as f:
                f.write("# t\n\n<!-- INFO END -->\n\n")
                for i in range(6):
                    f.write("第%s条 %s。\n\n" % ("一二三四五六"[i], "".join(random.choice(chars) for _ in range(40))))
    graph = os.path.join(tmp, "ref.graph")
    with open(graph, "w") as f:
        f.write("""docs = source { path = "%s/tree"  labels = folders }
c = clean { input = docs }
s = split { corpus = c  ratios = [0.5, 0.25, 0.25]  seed = 1 }
tok = bpe { text = [s.train]  vocab_size = 200 }
enc = encode { corpus = s  tokenizer = tok  max_len = 64 }
ft = finetune { train = enc.train  dev = enc.dev  tokenizer = tok  clean = c  hidden = 768  layers = 6  heads = 12
                intermediate = 3072  model_max_len = 128  batch = 4  max_steps = 1 }
""" % tmp)
    cache = os.path.join(tmp, "cache")
    out = subprocess.run([flow, "build", graph, "--cache", cache, "--json"], capture_output=True, text=True,
                         env=env, check=True).stdout
    for line in out.splitlines():
        e = json.loads(line)
        if e.get("event") == "finished" and e.get("node") == "ft":
            return cache, e["key"]
    raise SystemExit("onnx_bench.py: the reference model did not build")


if __name__ == "__main__":
    sys.exit(main())
