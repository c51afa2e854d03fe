#!/usr/bin/env python3
"""quant_model_bench.py - the peers of flow's quantized BERT forward.

Runs BertForSequenceClassification (the same config flow's bench builds:
hidden 768, 6 layers, 12 heads, FFN 3072, seq 128 by default, random
weights from a seed, or an HF export given with --hf DIR) as
  torch fp32, torch.ao.quantization.quantize_dynamic (int8 Linear),
  onnxruntime fp32 and onnxruntime's dynamic int8 quantization of the same
  model (exported with torch.onnx, opset 17), and with --flow-onnx DIR
  onnxruntime running flow's own fp32 / int8 / 4-bit ONNX exports
  (flow export --format onnx; the weights quant_model_bench.c measured:
  random ones, or the artifacts quant_model_bench.sh names),
with the same threads and inputs, and prints one line per measurement:
  peer <name> batch <B> seq <T> threads <n> ms_per_batch <x> seq_per_s <y> cpu_ms <c>
Batch 1 is reported as latency, batch 32 as throughput (best of the
repeats, after a warm-up); cpu_ms is the mean process CPU time of a call
(all threads), what the work costs when other jobs share the cores (a mean:
a running sibling thread's time reaches the process clock only at ticks, so
the best call under-counts).
onnxruntime fp32 and dynamic int8 run twice, side by side: with their
default spinning thread pool (what users get; named ...-spin) and without
spinning, as flow's and torch's OpenMP threads wait here
(OMP_WAIT_POLICY=passive); a spinning pool takes cores from the other jobs
of a shared machine and its CPU time counts the spin.  onnxruntime on
flow's own exports runs without spinning.  Used by quant_model_bench.sh; not a test.
"""
import argparse, os, sys, tempfile, time

def keep_heads(model, width):
    """Physically keeps the first `width` attention columns (the first
    heads) of every layer: query/key/value rows and output-dense columns
    (transformers 5 dropped PreTrainedModel.prune_heads; the attention view
    infers the head count from the Linear widths)."""
    import torch
    def cut(lin, rows=None, cols=None):
        w = lin.weight.data
        w = w[:rows] if rows is not None else w[:, :cols]
        new = torch.nn.Linear(w.shape[1], w.shape[0])
        new.weight.data = w.clone()
        new.bias.data = (lin.bias.data[:rows] if rows is not None else lin.bias.data).clone()
        return new
    for layer in model.bert.encoder.layer:
        att = layer.attention.self
        for name in ("query", "key", "value"):
            setattr(att, name, cut(getattr(att, name), rows=width))
        att.num_attention_heads = width // att.attention_head_size
        att.all_head_size = width
        layer.attention.output.dense = cut(layer.attention.output.dense, cols=width)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", help="HF export folder (else random weights)")
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--head-size", type=int, default=0,
                    help="width of a head when heads x head_size < hidden (a pruned model: "
                         "hidden/head_size heads, all but --heads pruned in every layer)")
    ap.add_argument("--ffn", type=int, default=3072)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--labels", type=int, default=7)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--peers", default="torch,torch-int8,ort,ort-int8")
    ap.add_argument("--flow-onnx", help="folder of flow's own ONNX exports (quant_model_bench.c with "
                                        "QBENCH_ONNX_DIR): onnxruntime runs them as peers onnxruntime-flow-*")
    ap.add_argument("--onnx-fp32", help="a model transformers cannot express (mean pooling): this fp32 ONNX "
                                        "(flow export --format onnx) is onnxruntime's fp32 peer and the input "
                                        "of its dynamic int8 quantization; no torch peers (--vocab: its vocabulary)")
    a = ap.parse_args()
    try:
        import numpy as np
        import torch
        from transformers import BertConfig, BertForSequenceClassification
    except ImportError as e:
        print(f"quant_model_bench.py: skipped ({e})")
        return 77
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = None
    if a.onnx_fp32:
        pass
    elif a.hf:
        model = BertForSequenceClassification.from_pretrained(a.hf)
    else:
        full = a.hidden // a.head_size if a.head_size else a.heads
        cfg = BertConfig(vocab_size=a.vocab, hidden_size=a.hidden, num_hidden_layers=a.layers,
                         num_attention_heads=full, intermediate_size=a.ffn,
                         max_position_embeddings=max(512, a.seq), num_labels=a.labels)
        model = BertForSequenceClassification(cfg)
        if full > a.heads:
            keep_heads(model, a.heads * (a.hidden // full))
    if model is not None:
        model.eval()
    V = model.config.vocab_size if model is not None else a.vocab
    rng = np.random.default_rng(1)
    peers = a.peers.split(",")
    if model is None:
        peers = [p for p in peers if p.startswith("ort")]

    def timeit(fn):
        """best wall time and mean process CPU time (all threads) of the calls"""
        fn()
        best, csum, start, n = 1e30, 0.0, time.perf_counter(), 0
        while n < 3 or time.perf_counter() - start < a.seconds:
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            best = min(best, time.perf_counter() - t0); csum += time.process_time() - c0; n += 1
        return best, csum / n

    def report(name, B, t):
        print(f"peer {name} batch {B} seq {a.seq} threads {a.threads} ms_per_batch {t[0]*1e3:.3f} "
              f"seq_per_s {B/t[0]:.1f} cpu_ms {t[1]*1e3:.3f}", flush=True)

    def ort_options(ort, spin=False):
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        # spin=False: threads wait without spinning, as flow's and torch's here;
        # spin=True: onnxruntime's default
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        return so

    qmodel = None
    if "torch-int8" in peers:
        qmodel = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    ort_sessions = {}
    if "ort" in peers or "ort-int8" in peers:
        try:
            import onnxruntime as ort
            from onnxruntime.quantization import quantize_dynamic, QuantType
        except ImportError as e:
            print(f"quant_model_bench.py: onnxruntime peers skipped ({e})")
            peers = [p for p in peers if not p.startswith("ort")]
        else:
            tmp = tempfile.mkdtemp(prefix="flow-qbench-")
            fp32 = a.onnx_fp32 or os.path.join(tmp, "model.onnx")
            if not a.onnx_fp32:
                ids = torch.zeros(1, a.seq, dtype=torch.long)
                torch.onnx.export(model, (ids, torch.ones_like(ids)), fp32,
                                  input_names=["input_ids", "attention_mask"], output_names=["logits"],
                                  dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}},
                                  opset_version=17, dynamo=False)
            int8 = os.path.join(tmp, "model.int8.onnx")
            quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
            for name, path in (("ort", fp32), ("ort-int8", int8)):
                if name in peers:
                    for spin in (True, False):
                        label = ("onnxruntime-fp32" if name == "ort" else "onnxruntime-dynamic-int8") + \
                                ("-spin" if spin else "")
                        ort_sessions[label] = ort.InferenceSession(path, ort_options(ort, spin),
                                                                   providers=["CPUExecutionProvider"])
    flow_onnx = {}
    if a.flow_onnx:
        import onnxruntime as ort
        so = ort_options(ort)
        for name in sorted(os.listdir(a.flow_onnx)):   # flow-fp32, flow-int8, flow-uint4-gG
            path = os.path.join(a.flow_onnx, name, "model.onnx")
            if name.startswith("flow-") and os.path.exists(path):
                flow_onnx["onnxruntime-" + name] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for B in [int(x) for x in a.batches.split(",")]:
        ids = rng.integers(5, V, size=(B, a.seq), dtype=np.int64)
        mask = np.ones((B, a.seq), dtype=np.int64)
        tid, tmask = torch.from_numpy(ids), torch.from_numpy(mask)
        with torch.inference_mode():
            if "torch" in peers:
                report("torch-fp32", B, timeit(lambda: model(input_ids=tid, attention_mask=tmask)))
            if qmodel is not None:
                report("torch-dynamic-int8", B, timeit(lambda: qmodel(input_ids=tid, attention_mask=tmask)))
        for name, sess in flow_onnx.items():
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            report(name, B, timeit(lambda: sess.run(None, feed)))
        for name, sess in ort_sessions.items():
            feed = {"input_ids": ids, "attention_mask": mask}
            if a.onnx_fp32:         # flow's export also takes token types
                feed["token_type_ids"] = np.zeros_like(ids)
            report(name, B, timeit(lambda: sess.run(None, feed)))
    return 0

if __name__ == "__main__":
    sys.exit(main())
