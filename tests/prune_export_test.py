#!/usr/bin/env python3
"""prune_export_test.py — pruned models through both exports.

Builds a tiny graph on generated data (pretrain -> finetune with 2 layers
x 4 heads, FFN 44 -> prune to half the heads and FFN neurons, global, so
the layers end up with unequal heads and widths; and a per-layer prune),
then for each pruned model:
  - `flow export --format hf`: transformers loads the folder
    (AutoModelForSequenceClassification; BertConfig has one head count and
    width, so flow writes removed heads/neurons as zeros: same function)
    and its logits equal flow's own forward (tests/tools/train_model_tool)
    within 1e-4 on padded batches of real test units;
  - `flow export --format onnx`: onnx.checker passes and ONNX Runtime's
    logits equal flow's within 1e-4 (batch 1 and a padded batch);
  - the exported ONNX initializers have the pruned (smaller) shapes.
Exit 77 (skip) when torch/transformers/onnx/onnxruntime are missing or
$FLOW / $FLOW_BUILD are not set.
"""
import json
import os
import shutil
import sys
import tempfile

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification
    from tokenizers import Tokenizer
except ImportError as e:  # pragma: no cover
    print("skip: %s" % e)
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools"))
from flowtest import Checks, output, require_tools  # noqa: E402
SRC = os.environ.get("FLOW_SRC", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FLOW, BUILD, [TOOL] = require_tools("train_model_tool")
check = Checks("prune_export_test")
run = output  # this test reads what a command prints; run(args, stdin) -> stdout


T = tempfile.mkdtemp(prefix="flow-prune-export-")
try:
    run([sys.executable, os.path.join(SRC, "tests/tools/gen_laws.py"), os.path.join(T, "tree"), "5"])
    graph = os.path.join(T, "g.graph")
    with open(graph, "w") as f:
        f.write("""docs = source { path = "%s/tree"  labels = folders }
c = clean { input = docs }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
tok = bpe { text = [s.train]  vocab_size = 150 }
enc = encode { corpus = s  tokenizer = tok  max_len = 24 }
pt = pretrain { train = enc.train  dev = enc.dev  tokenizer = tok  hidden = 32  layers = 2  heads = 4
                intermediate = 44  max_len = 32  batch = 8  max_steps = 8  lr = 0.001 }
ft = finetune { train = enc.train  dev = enc.dev  base = pt  clean = c  batch = 8  max_steps = 20  lr = 0.003 }
half = prune { model = ft  dev = s.dev  head_ratio = 0.5  ffn_ratio = 0.5 }
lay = prune { model = ft  dev = s.dev  heads = 3  ffn = 10  scope = layer  rounds = 1 }
""" % T)
    cache = os.path.join(T, "cache")
    out = run([FLOW, "build", graph, "--cache", cache, "--json", "-j", "2"])
    keys = {}
    for line in out.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "finished":
            keys[e["node"]] = e["key"]
    test_text = run([FLOW, "cat", keys["s"], "test/text", "--cache", cache]).splitlines()[:12]
    check("test units", len(test_text) >= 8)
    for name in ("half", "lay"):
        key = keys[name]
        cfg = json.loads(run([FLOW, "cat", key, "model.json", "--cache", cache]))["config"]
        check("%s is shrunk: heads %s FFN %s" % (name, cfg["layer_heads"], cfg["layer_ffn"]),
              sum(cfg["layer_heads"]) < 8 and sum(cfg["layer_ffn"]) < 88)
        if name == "half":
            check("half: the layers differ (heads %s, FFN %s)" % (cfg["layer_heads"], cfg["layer_ffn"]),
                  len(set(cfg["layer_heads"])) > 1 or len(set(cfg["layer_ffn"])) > 1)
        hf_dir, onnx_dir = os.path.join(T, name + "_hf"), os.path.join(T, name + "_onnx")
        run([FLOW, "export", key, "--format", "hf", "-o", hf_dir, "--cache", cache])
        run([FLOW, "export", key, "--format", "onnx", "-o", onnx_dir, "--cache", cache])
        tok = Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json"))
        seqs = []
        for t in test_text:
            ids = tok.encode(t).ids[:23]
            if ids[-1] != 3:
                ids[-1] = 3
            seqs.append(ids)
        ours = run([TOOL, cache, key, "cls"], "\n".join(" ".join(map(str, s)) for s in seqs) + "\n")
        ours = np.array([[float(x) for x in l.split()] for l in ours.splitlines()])
        check("%s: flow logits for %d sequences" % (name, len(seqs)), ours.shape[0] == len(seqs))
        Tm = max(len(s) for s in seqs)
        ids = np.zeros((len(seqs), Tm), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = s
            mask[i, :len(s)] = 1
        # transformers
        model = AutoModelForSequenceClassification.from_pretrained(hf_dir).eval()
        with torch.no_grad():
            hf = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
        d = np.abs(hf - ours).max()
        print("%s: transformers vs flow logits, max diff %.2e" % (name, d))
        check("%s: transformers logits match flow's (max diff %.2e)" % (name, d), d < 1e-4)
        # ONNX Runtime
        path = os.path.join(onnx_dir, "model.onnx")
        onnx.checker.check_model(onnx.load(path), full_check=True)
        inits = {i.name: list(i.dims) for i in onnx.load(path).graph.initializer}
        dims = {x for d in inits.values() if len(d) == 2 for x in d}
        check("%s: ONNX initializers have the pruned FFN widths %s and not the original 44 (%s)"
              % (name, cfg["layer_ffn"], sorted(dims)), set(cfg["layer_ffn"]) <= dims and 44 not in dims)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        ox = sess.run(["logits"], feed)[0]
        d = np.abs(ox - ours).max()
        print("%s: onnxruntime vs flow logits, max diff %.2e" % (name, d))
        check("%s: ONNX Runtime logits match flow's (max diff %.2e)" % (name, d), d < 1e-4)
        one = {k: v[:1, :len(seqs[0])] for k, v in feed.items()}
        d1 = np.abs(sess.run(["logits"], one)[0][0] - ours[0]).max()
        check("%s: ONNX Runtime batch 1 (max diff %.2e)" % (name, d1), d1 < 1e-4)
finally:
    shutil.rmtree(T, ignore_errors=True)

check.finish()
print("prune_export_test: all checks passed")
