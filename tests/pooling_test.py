#!/usr/bin/env python3
"""pooling_test.py — the mean-pooled classifier head (finetune's
`pooling = mean`) and every consumer of it, against an independent numpy
re-implementation of the model read from the artifacts' safetensors.

Builds a tiny graph on generated data (source -> clean -> split -> bpe ->
encode -> pretrain -> finetune twice, [CLS] and mean) and the consumers of
the mean model: quantize (int8 GPTQ), trim-vocab, prune (half the heads and
FFN neurons: scored with the mean head's forward and backward; and one
re-headed to [CLS] by `pooling = cls` for its recovery fine-tune), distill
(a student made from the mean teacher's config inherits its pooling; a
student from the [CLS] model keeps [CLS] against the mean teacher; a
[CLS] teacher's config student with `pooling = mean`).  Checks:
  - model.json: "pooling":"mean" for the mean models and every consumer
    that keeps it, no "pooling" key for [CLS] ones; `pooling = cls`
    written out gives the key of the node without it (existing keys stay);
  - flow's logits (tests/tools/clf_logits_tool: padded batches, token
    types, masks) equal the numpy reference of each fp32 artifact with the
    pooling its config names within 1e-4, and are far from the other
    pooling's (so a head that ignored the config would fail);
  - `flow classify --all` on raw text (tokenizers on the artifact's
    tokenizer.json for the ids) gives the reference's probabilities;
  - ONNX export of the mean model and of its int8 quantize node: the graph
    has ReduceSum (the masked mean in standard operators), config.json says
    pooling mean, ONNX Runtime's logits equal flow's (fp32 within 1e-4; the
    integer path within the quantization tests' bound, relative MSE < 1e-3);
  - `flow export --format hf` of a mean model is refused (exit 2) naming the
    node and pointing at --format onnx;
  - a bad pooling value fails at graph load naming the node (finetune and
    distill), and so does prune's pooling without the recovery (train).
Exit 77 (skip) when numpy/onnx/onnxruntime/safetensors/tokenizers are
missing or $FLOW is not set.
"""
import json
import math
import os
import shutil
import sys
import tempfile

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
except ImportError as e:  # pragma: no cover
    print("skip: %s" % e)
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools"))
from flowtest import Checks, random_batch, require_tools, run  # noqa: E402
from gen_laws import write as write_laws  # noqa: E402
FLOW, BUILD, [TOOL] = require_tools("clf_logits_tool")
check = Checks("pooling_test")


# ---- the reference: BERT + pooling + pooler + classifier in float64 ------
ERF = np.vectorize(math.erf)


def layernorm(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-12) * g + b


def reference_logits(W, cfg, ids, types, mask, pooling):
    """transformers' BertForSequenceClassification at inference, written
    from its definition, with the [CLS] row or the mean over real positions
    ([CLS] and [SEP] included) as the pooler's input."""
    W = {k: v.astype(np.float64) for k, v in W.items()}
    B, T = ids.shape
    d = cfg["head_size"]
    x = (W["bert.embeddings.word_embeddings.weight"][ids]
         + W["bert.embeddings.position_embeddings.weight"][np.arange(T)][None]
         + W["bert.embeddings.token_type_embeddings.weight"][types])
    x = layernorm(x, W["bert.embeddings.LayerNorm.weight"], W["bert.embeddings.LayerNorm.bias"])
    keymask = np.where(mask[:, None, None, :] != 0, 0.0, -np.inf)
    for l in range(cfg["layers"]):
        p = "bert.encoder.layer.%d." % l
        nh = cfg["layer_heads"][l]

        def lin(v, name):
            return v @ W[p + name + ".weight"].T + W[p + name + ".bias"]

        def heads(v):
            return v.reshape(B, T, nh, d).transpose(0, 2, 1, 3)
        q, k, v = (heads(lin(x, "attention.self." + n)) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + keymask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, nh * d)
        a = layernorm(x + lin(ctx, "attention.output.dense"), W[p + "attention.output.LayerNorm.weight"],
                      W[p + "attention.output.LayerNorm.bias"])
        h = lin(a, "intermediate.dense")
        h = 0.5 * h * (1 + ERF(h / math.sqrt(2)))
        x = layernorm(a + lin(h, "output.dense"), W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"])
    if pooling == "mean":
        m = (mask != 0).astype(np.float64)[:, :, None]
        s = (x * m).sum(1) / m.sum(1)
    else:
        s = x[:, 0]
    pooled = np.tanh(s @ W["bert.pooler.dense.weight"].T + W["bert.pooler.dense.bias"])
    return pooled @ W["classifier.weight"].T + W["classifier.bias"]




def flow_logits(cache, key, batches):
    """flow's forward of the stored artifact (clf_logits_tool) per batch."""
    lines = []
    for ids, types, mask in batches:
        lines.append("%d %d" % ids.shape)
        for a in (ids, types, mask):
            lines += [" ".join(str(int(v)) for v in row) for row in a]
    rows = [[float(x) for x in l.split()] for l in run([TOOL, cache, key], "\n".join(lines) + "\n").stdout.splitlines()]
    out, k = [], 0
    for ids, _, _ in batches:
        out.append(np.array(rows[k:k + len(ids)], dtype=np.float64))
        k += len(ids)
    return out


T = tempfile.mkdtemp(prefix="flow-pooling-")
try:
    write_laws(os.path.join(T, "tree"), 5, laws=5, articles=8, longest=40, comma=True)
    head = """docs = source { path = "%s/tree"  labels = folders }
c = clean { input = docs }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
tok = bpe { text = [s.train]  vocab_size = 150 }
enc = encode { corpus = s  tokenizer = tok  max_len = 24 }
pt = pretrain { train = enc.train  dev = enc.dev  tokenizer = tok  hidden = 32  layers = 2  heads = 4
                intermediate = 48  max_len = 32  batch = 8  max_steps = 8  lr = 0.001 }
""" % T
    ft = "finetune { train = enc.train  dev = enc.dev  base = pt  clean = c  batch = 8  max_steps = 12  lr = 0.003%s }\n"
    dist = "distill { teacher = [%s]  train = enc.train  dev = enc.dev  batch = 8  max_steps = 6%s }\n"
    graph = os.path.join(T, "g.graph")
    with open(graph, "w") as f:
        f.write(head)
        f.write("ft = " + ft % "")
        f.write("ftc = " + ft % "  pooling = cls")
        f.write("ftm = " + ft % "  pooling = mean")
        f.write("q8 = quantize { model = ftm  calibration = s.train  bits = 8 }\n")
        f.write("tv = trim-vocab { model = ftm  corpus = s.train }\n")
        f.write("pr = prune { model = ftm  dev = s.dev  head_ratio = 0.5  ffn_ratio = 0.5  rounds = 2 }\n")
        f.write("pr_cls = prune { model = ftm  dev = s.dev  train = s.train  head_ratio = 0.5  rounds = 1  "
                "max_steps = 4  batch = 8  pooling = cls }\n")
        f.write("d_inherit = " + dist % ("ftm", ""))
        f.write("d_student = " + dist % ("ftm", "  student = ft"))
        f.write("d_mean = " + dist % ("ft", "  pooling = mean"))
    cache = os.path.join(T, "cache")
    out = run([FLOW, "build", graph, "--cache", cache, "--json", "-j", "2"]).stdout
    keys = {}
    for line in out.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "finished":
            keys[e["node"]] = e["key"]
    want_mean = {"ft": False, "ftc": False, "ftm": True, "q8": True, "tv": True, "pr": True, "pr_cls": False,
                 "d_inherit": True, "d_student": False, "d_mean": True}
    if not check("every node built (%s)" % sorted(keys), all(n in keys for n in want_mean)):
        sys.exit(1)
    check("pooling = cls written out keeps the node's key", keys["ft"] == keys["ftc"])
    check("pooling = mean is another key", keys["ft"] != keys["ftm"])

    # ---- model.json records the pooling --------------------------------------
    cfgs, weights = {}, {}
    for node, mean in want_mean.items():
        mj = json.loads(run([FLOW, "cat", keys[node], "model.json", "--cache", cache]).stdout)
        cfgs[node] = mj["config"]
        got = mj["config"].get("pooling")
        check("%s: model.json pooling %r" % (node, got), got == ("mean" if mean else None))
        if node != "q8":
            path = os.path.join(T, node + ".safetensors")
            run([FLOW, "cat", keys[node], "weights", "-o", path, "--cache", cache])
            weights[node] = load_file(path)

    # ---- flow's logits against the reference ---------------------------------
    rng = np.random.default_rng(3)
    for node, mean in want_mean.items():
        if node == "q8":
            continue
        cfg = cfgs[node]
        batches = [random_batch(rng, 1, 9, cfg["vocab_size"]), random_batch(rng, 7, 9, cfg["vocab_size"]),
                   random_batch(rng, 5, 24, cfg["vocab_size"])]
        ours = flow_logits(cache, keys[node], batches)
        worst = other = 0.0
        for (ids, types, mask), got in zip(batches, ours):
            ref = reference_logits(weights[node], cfg, ids, types, mask, "mean" if mean else "cls")
            alt = reference_logits(weights[node], cfg, ids, types, mask, "cls" if mean else "mean")
            scale = max(1.0, float(np.abs(ref).max()))
            worst = max(worst, float(np.abs(got - ref).max()) / scale)
            other = max(other, float(np.abs(got - alt).max()) / scale)
        check("%s: flow vs the %s-pooling reference: max diff %.2e" % (node, "mean" if mean else "cls", worst),
              worst < 1e-4)
        check("%s: the other pooling's logits are another function (diff %.2e)" % (node, other), other > 1e-3)
        print("%-10s %s pooling: flow vs reference %.1e, vs the other pooling %.1e"
              % (node, "mean" if mean else "cls ", worst, other))

    # ---- flow classify on raw text -------------------------------------------
    tj = os.path.join(T, "tokenizer.json")
    with open(tj, "w") as f:
        f.write(run([FLOW, "cat", keys["ftm"], "tokenizer/tokenizer.json", "--cache", cache]).stdout)
    tok = Tokenizer.from_file(tj)
    labels = json.loads(run([FLOW, "cat", keys["ftm"], "model.json", "--cache", cache]).stdout)["labels"]
    texts = ["刑罚犯罪判处徒刑拘役罚金没收自首", "税收财政预算银行货币价格审计统计会计金融",
             "婚姻家庭继承", "依法规定"]
    lines = run([FLOW, "classify", keys["ftm"], "--all", "--cache", cache], "\n".join(texts) + "\n").stdout.splitlines()
    check("classify printed one line per text", len(lines) == len(texts))
    for text, line in zip(texts, lines):
        probs = json.loads(line.split("\t")[2])
        q = np.array([probs[l] for l in labels])
        ids = np.array([tok.encode(text).ids[:24]], dtype=np.int64)
        logit = reference_logits(weights["ftm"], cfgs["ftm"], ids, np.zeros_like(ids), np.ones_like(ids), "mean")[0]
        p = np.exp(logit - logit.max())
        p /= p.sum()
        check("classify %r: max probability diff %.2e" % (text, np.abs(p - q).max()), np.abs(p - q).max() < 1e-4)

    # ---- ONNX export ---------------------------------------------------------
    def ort_logits(path, batches):
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return [sess.run(["logits"], {"input_ids": i, "attention_mask": m, "token_type_ids": t})[0]
                for i, t, m in batches]

    V = cfgs["ftm"]["vocab_size"]
    batches = [random_batch(rng, 1, 9, V), random_batch(rng, 7, 9, V), random_batch(rng, 7, 24, V)]
    for node, bound in (("ftm", None), ("q8", 1e-3), ("ft", None)):
        d = os.path.join(T, "onnx_" + node)
        run([FLOW, "export", keys[node], "--format", "onnx", "-o", d, "--cache", cache])
        model = onnx.load(os.path.join(d, "model.onnx"))
        ops = {n.op_type for n in model.graph.node}
        mean = want_mean[node]
        check("%s: ReduceSum in the ONNX graph iff mean pooling (ops %s)" % (node, sorted(ops)),
              ("ReduceSum" in ops) == mean)
        pooling = json.load(open(os.path.join(d, "config.json"))).get("pooling")
        check("%s: config.json pooling %r" % (node, pooling), pooling == ("mean" if mean else "cls"))
        got, ref = ort_logits(os.path.join(d, "model.onnx"), batches), flow_logits(cache, keys[node], batches)
        for (ids, _, _), g, r in zip(batches, got, ref):
            if bound is None:
                diff = float(np.abs(g - r).max()) / max(1.0, float(np.abs(r).max()))
                check("%s: ONNX Runtime vs flow at batch %d seq %d: %.2e" % (node, *ids.shape, diff), diff < 1e-4)
            else:
                rel = float(((g - r) ** 2).mean() / max((r ** 2).mean(), 1e-30))
                check("%s: ONNX Runtime vs flow's integer path at batch %d seq %d: relative MSE %.2e"
                      % (node, *ids.shape, rel), rel < bound)
        if node == "q8":   # the integer path keeps the mean head: near the fp32 mean model
            fp = flow_logits(cache, keys["ftm"], batches)
            rel = max(float(((a - b) ** 2).mean() / max((b ** 2).mean(), 1e-30)) for a, b in zip(ref, fp))
            check("q8 vs its fp32 mean model: relative MSE %.2e" % rel, rel < 1e-2)

    # ---- HF export refused ---------------------------------------------------
    for node in ("ftm", "tv"):
        r = run([FLOW, "export", keys[node], "--format", "hf", "-o", os.path.join(T, "hf_" + node), "--cache", cache],
                expect=2)
        check("hf export of %s refused naming the node and --format onnx: %s" % (node, r.stderr.strip()),
              "node '%s'" % node in r.stderr and "--format onnx" in r.stderr and "pooling = mean" in r.stderr)
        check("hf export of %s wrote no folder" % node, not os.path.exists(os.path.join(T, "hf_" + node)))
    run([FLOW, "export", keys["ft"], "--format", "hf", "-o", os.path.join(T, "hf_ft"), "--cache", cache])

    # ---- bad values fail at graph load, naming the node ----------------------
    for stage_line, node in (("bad = " + ft % "  pooling = avg", "bad"),
                             ("bad2 = " + dist % ("ft", "  pooling = first"), "bad2"),
                             ("bad3 = prune { model = ft  dev = s.dev  head_ratio = 0.5  pooling = mean }\n", "bad3")):
        g2 = os.path.join(T, "bad.graph")
        with open(g2, "w") as f:
            f.write(head + "ft = " + ft % "" + stage_line)
        r = run([FLOW, "build", g2, "--cache", cache], expect=2)
        check("bad pooling value: %s" % r.stderr.strip(), "node '%s'" % node in r.stderr and "pooling" in r.stderr)
finally:
    shutil.rmtree(T, ignore_errors=True)

check.finish()
print("pooling_test: all checks passed")
