#!/usr/bin/env python3
"""export_hf_test.py — `flow export --format hf` against transformers.

Builds a tiny graph on generated data (source -> clean -> split -> bpe ->
encode -> pretrain -> finetune), exports the fine-tuned classifier and the
pre-trained masked LM, loads them with AutoTokenizer +
AutoModelForSequenceClassification / AutoModelForMaskedLM and checks:
  - the label names survive (config.id2label);
  - HF probabilities equal `flow classify --all` within 1e-4 on raw lines;
  - HF logits equal flow's (tests/tools/train_model_tool) within 1e-4 for
    the classifier and for every MLM position;
  - the artifacts' `weights` part (`flow cat HASH weights`) opens with the
    `safetensors` package: metadata format pt, F32 tensors whose names are
    exactly transformers' parameters (the tied decoder aliases excepted),
    every tensor equal, bit for bit, to the one transformers loaded from
    the export.
Exit 77 (skip) when torch/transformers are missing or $FLOW is not set.
"""
import json
import os
import shutil
import sys
import tempfile

try:
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer
    from safetensors import safe_open
except ImportError as e:  # pragma: no cover
    print("skip: %s" % e)
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools"))
from flowtest import Checks, output, require_tools  # noqa: E402
from gen_laws import write as write_laws  # noqa: E402
FLOW, BUILD, [TOOL] = require_tools("train_model_tool")
check = Checks("export_hf_test")
run = output  # this test reads what a command prints; run(args, stdin) -> stdout


T = tempfile.mkdtemp(prefix="flow-export-hf-")
try:
    write_laws(os.path.join(T, "tree"), 7, laws=5, articles=8, longest=40, comma=True)
    graph = os.path.join(T, "g.graph")
    with open(graph, "w") as f:
        f.write("""docs = source { path = "%s/tree"  labels = folders }
c = clean { input = docs }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
tok = bpe { text = [s.train]  vocab_size = 150 }
enc = encode { corpus = s  tokenizer = tok  max_len = 24 }
pt = pretrain { train = enc.train  dev = enc.dev  tokenizer = tok  hidden = 32  layers = 2  heads = 4
                intermediate = 48  max_len = 32  batch = 8  max_steps = 8  lr = 0.001 }
ft = finetune { train = enc.train  dev = enc.dev  base = pt  clean = c  batch = 8  max_steps = 10  lr = 0.003 }
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
    ft_dir, pt_dir = os.path.join(T, "hf_ft"), os.path.join(T, "hf_pt")
    run([FLOW, "export", keys["ft"], "--format", "hf", "-o", ft_dir, "--cache", cache])
    run([FLOW, "export", keys["pt"], "--format", "hf", "-o", pt_dir, "--cache", cache])
    labels = run([FLOW, "cat", keys["ft"], "model.json", "--cache", cache])
    labels = json.loads(labels)["labels"]

    # ---- classifier --------------------------------------------------------
    tok = AutoTokenizer.from_pretrained(ft_dir)
    model = AutoModelForSequenceClassification.from_pretrained(ft_dir).eval()
    check("id2label", [model.config.id2label[i] for i in range(len(labels))] == labels)
    texts = ["刑罚犯罪判处徒刑，拘役罚金没收自首。",
             "税收财政预算银行货币价格审计统计会计金融税收财政预算银行货币价格审计统计会计金融",
             "婚姻家庭继承",
             "依法规定"]
    flow_out = run([FLOW, "classify", keys["ft"], "--all", "--cache", cache], "\n".join(texts) + "\n")
    flow_probs = [json.loads(line.split("\t")[2]) for line in flow_out.splitlines()]
    check("classify printed one line per text", len(flow_probs) == len(texts))
    ids_lines = []
    for text, fp in zip(texts, flow_probs):
        enc = tok(text, truncation=True, max_length=24, return_tensors="pt")
        ids_lines.append(" ".join(str(i) for i in enc["input_ids"][0].tolist()))
        with torch.no_grad():
            p = torch.softmax(model(**enc).logits[0], -1).numpy()
        q = np.array([fp[l] for l in labels])
        check("probabilities of %r: max diff %.2e" % (text, np.abs(p - q).max()), np.abs(p - q).max() < 1e-4)
    tool = run([TOOL, cache, keys["ft"], "cls"], "\n".join(ids_lines) + "\n")
    tool_lines = tool.splitlines()
    # zip() below stops at the shorter list: empty tool output would pass
    check("train_model_tool printed %d logit lines for %d texts" % (len(tool_lines), len(texts)),
          len(tool_lines) == len(texts) and len(ids_lines) == len(texts))
    for line, text in zip(tool_lines, texts):
        ours = np.array([float(x) for x in line.split()])
        enc = tok(text, truncation=True, max_length=24, return_tensors="pt")
        with torch.no_grad():
            hf = model(**enc).logits[0].numpy()
        check("classifier logits of %r: max diff %.2e" % (text, np.abs(hf - ours).max()), np.abs(hf - ours).max() < 1e-4)

    # ---- the weights part is safetensors -------------------------------------
    def check_weights(key, hf_model, what):
        path = os.path.join(T, "%s.safetensors" % what)
        run([FLOW, "cat", key, "weights", "-o", path, "--cache", cache])
        with safe_open(path, framework="np") as f:
            check("%s weights metadata %r" % (what, f.metadata()), f.metadata() == {"format": "pt"})
            names = set(f.keys())
            state = {k: v.detach().numpy() for k, v in hf_model.state_dict().items()}
            aliases = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
            want = set(state) - aliases
            check("%s weights name the model's parameters (missing %s, extra %s)"
                  % (what, sorted(want - names)[:3], sorted(names - want)[:3]), names == want)
            for name in sorted(names & want):
                t = f.get_tensor(name)
                check("%s tensor %s: dtype %s" % (what, name, t.dtype), t.dtype == np.float32)
                check("%s tensor %s: shape %s vs %s" % (what, name, t.shape, state[name].shape),
                      t.shape == state[name].shape)
                if t.shape == state[name].shape:
                    check("%s tensor %s equals the exported one" % (what, name), np.array_equal(t, state[name]))
        return len(names)

    n_ft = check_weights(keys["ft"], model, "finetune")

    # ---- masked LM -----------------------------------------------------------
    tok2 = AutoTokenizer.from_pretrained(pt_dir)
    mlm = AutoModelForMaskedLM.from_pretrained(pt_dir).eval()
    for text in texts[:2]:
        enc = tok2(text, truncation=True, max_length=32, return_tensors="pt")
        ids = enc["input_ids"][0].tolist()
        ids[2] = tok2.mask_token_id
        with torch.no_grad():
            hf = mlm(input_ids=torch.tensor([ids])).logits[0].numpy()
        tool = run([TOOL, cache, keys["pt"], "mlm"], " ".join(str(i) for i in ids) + "\n")
        ours = np.array([[float(x) for x in l.split()] for l in tool.splitlines()])
        check("MLM logits shape %s vs %s" % (hf.shape, ours.shape), hf.shape == ours.shape)
        if hf.shape == ours.shape:
            d = np.abs(hf - ours).max()
            check("MLM logits of %r: max diff %.2e" % (text, d), d < 1e-4)
    n_pt = check_weights(keys["pt"], mlm, "pretrain")
    print("weights: %d (finetune) and %d (pretrain) tensors read with safetensors" % (n_ft, n_pt))
finally:
    shutil.rmtree(T, ignore_errors=True)

check.finish()
print("export_hf_test: all checks passed")
