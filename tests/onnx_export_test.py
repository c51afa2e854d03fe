#!/usr/bin/env python3
"""onnx_export_test.py — `flow export --format onnx` against onnx and
ONNX Runtime (PyPI `onnx`, `onnxruntime`; `tokenizers` for the end-to-end
check).

Builds a tiny legal-style graph on generated data (source -> clean -> split
-> bpe -> encode -> pretrain -> finetune, plus a TF-IDF baseline), exports
the fine-tuned classifier at opset 17 (Erf GELU), opset 20 (Gelu) and with
external data, and checks for each:
  - onnx.checker.check_model (full check, with shape inference) passes;
  - the graph uses the operators the opset calls for (LayerNormalization;
    Gelu at 20, Erf below) and only the default domain (fp32);
  - ONNX Runtime (CPUExecutionProvider) logits equal flow's own forward
    (tests/tools/clf_logits_tool, same padded batches) within 1e-4 at batch
    1 and 7, sequence 9 and 128, with padding, token types and masks;
  - argmax agreement >= 99.5% over the test set (every generated unit);
  - raw text -> tokenizer.json (tokenizers) -> ONNX Runtime gives the
    probabilities of `flow classify --all` within 1e-4 (config.json's
    max_length truncation included).
Other shapes: a prune artifact (global scope: layers of different head
counts and FFN widths) and an int8 quantize node of it, and the
trim-vocab and extend-vocab artifacts of the model export through `flow
export` (word embeddings of their vocabulary size,
their tokenizer.json) with ONNX Runtime logits within 1e-4 of flow's; a
pruned shape cut from the model (onnx_quant_tool SPEC+pruned: layers of 2
and 3 heads, FFN widths 128 and 86) exports in fp32 and int8 with per-layer
widths and matching logits.  The above-2-GB path: flow_testhooks with
FLOW_TEST_ONNX_INLINE_LIMIT=100000 writes model.onnx.data without
--external-data (every large initializer external), ONNX Runtime loads it
with matching logits; a limit above the model keeps it inline, and `flow`
itself ignores the variable.
Quantize artifacts (quantize nodes: int8 RTN and GPTQ; 4-bit uniform
symmetric and asymmetric at groups 32, 64, 128, RTN and GPTQ) export
through `flow export` at opsets 17, 20 and 21, pass the checker, use
MatMulInteger / MatMulNBits (block_size = the group) for every encoder
Linear, hold the artifact's own codes, scales and zeros (compared with its
weights part), and ONNX Runtime's logits match flow's quantized forward
(clf_logits_tool on the artifact: flow's integer kernels) within the
quantization tests' bound (relative logit MSE < 1e-3 int8, < 0.05 4-bit)
at batch 1 and 7, sequence 9 and 128, with argmax agreement >= 99.5% on
the test set; raw text through tokenizer.json matches `flow classify` of
the artifact; a policy-none artifact exports as fp32; with embeddings =
int8 / uint4 the three embedding tables are exported as fp32 rows equal to
the artifact's dequantized codes.
Also: the same export twice gives the same bytes; bad requests are usage
errors (exit 2) with a clear message: a tfidf-linear model, a masked LM,
an opset below 17 or above what flow writes, an NF4 artifact, and
`--format hf` of a quantize artifact.
Exit 77 (skip) when onnx/onnxruntime are missing or $FLOW is not set.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnx
    import onnx.numpy_helper
    import onnxruntime as ort
except ImportError as e:  # pragma: no cover
    print("skip: %s" % e)
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools"))
from flowtest import Checks, random_batch, require_tools, run  # noqa: E402
from gen_laws import write as write_laws  # noqa: E402
FLOW, BUILD, [TOOL, QTOOL] = require_tools("clf_logits_tool", "onnx_quant_tool")
check = Checks("onnx_export_test")


def tool_logits(args, batches):
    """logits of a tool (clf_logits_tool / onnx_quant_tool logits) for a list
    of padded batches (ids, types, mask), in one run: a list of [B, C]."""
    lines = []
    for ids, types, mask in batches:
        lines.append("%d %d" % ids.shape)
        for a in (ids, types, mask):
            lines += [" ".join(str(int(v)) for v in row) for row in a]
    rows = [[float(x) for x in l.split()] for l in run(args, "\n".join(lines) + "\n").stdout.splitlines()]
    out, k = [], 0
    for ids, _, _ in batches:
        out.append(np.array(rows[k:k + len(ids)], dtype=np.float64))
        k += len(ids)
    return out


def flow_logits(cache, key, batches):
    """flow's fp32 forward (tests/tools/clf_logits_tool)."""
    return tool_logits([TOOL, cache, key], batches)


def quant_logits(cache, key, spec, batches):
    """flow's quantized forward (tests/tools/onnx_quant_tool)."""
    return tool_logits([QTOOL, cache, key, spec, "logits"], batches)




def read_part(cache, key, part):
    r = subprocess.run([FLOW, "cat", key, part, "--cache", cache], capture_output=True)
    if r.returncode != 0:
        print("flow cat %s %s failed: %s" % (key, part, r.stderr.decode()[-500:]))
        sys.exit(1)
    return r.stdout


def read_encoded(cache, key, split):
    """ids and offsets parts of an encode node (formats in stages/stages.h)."""
    raw = read_part(cache, key, split + "/ids")
    width = int.from_bytes(raw[12:16], "little")
    count = int.from_bytes(raw[16:24], "little")
    ids = np.frombuffer(raw[24:24 + width * count], dtype=np.uint16 if width == 2 else np.int32)
    raw = read_part(cache, key, split + "/offsets")
    n1 = int.from_bytes(raw[16:24], "little")
    offs = np.frombuffer(raw[24:24 + 8 * n1], dtype=np.uint64)
    check("%s ids/offsets headers" % split, ids.size == count and offs[-1] == count)
    return ids.astype(np.int64), offs


def relative_mse(got, ref):
    """the quantization tests' measure (tests/bert_quant_test.c): MSE / mean square of ref"""
    return float(((got - ref) ** 2).mean() / max((ref ** 2).mean(), 1e-30))


def test_batches(seqs):
    """the test split's sequences in padded batches of 7"""
    out = []
    for i in range(0, len(seqs), 7):
        chunk = seqs[i:i + 7]
        L = max(len(q) for q in chunk)
        ids = np.zeros((len(chunk), L), dtype=np.int64)
        mask = np.zeros_like(ids)
        for b, q in enumerate(chunk):
            ids[b, :len(q)] = q
            mask[b, :len(q)] = 1
        out.append((ids, np.zeros_like(ids), mask))
    return out


def ops_of(model):
    return {(n.domain or "", n.op_type) for n in model.graph.node}


def checker(name, path):
    try:
        onnx.checker.check_model(path, full_check=True)
    except Exception as ex:  # noqa: BLE001 - report any checker failure
        check("%s: onnx.checker: %s" % (name, ex), False)


def ort_vs_flow(name, path, batches, refs, bound=1e-4):
    """ONNX Runtime's logits of model path against flow's refs (one per
    batch): max |diff| <= bound x max(1, max |ref|); returns the worst diff."""
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    worst = 0.0
    for (ids, types, mask), ref in zip(batches, refs):
        got = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
        if check("%s: logits shape %s at batch %d seq %d" % (name, got.shape, *ids.shape), got.shape == ref.shape):
            diff = float(np.abs(got - ref).max())
            check("%s: batch %d seq %d: max logit diff %.2e" % (name, ids.shape[0], ids.shape[1], diff),
                  diff <= bound * max(1.0, np.abs(ref).max()))
            worst = max(worst, diff)
    return worst


def initializer_dims(path):
    m = onnx.load(path, load_external_data=False)
    return {t.name: list(t.dims) for t in m.graph.initializer}


try:
    from tokenizers import Tokenizer
except ImportError:
    Tokenizer = None
    print("note: tokenizers missing; end-to-end text checks skipped")
texts = ["刑罚犯罪判处徒刑，拘役罚金没收自首。", "婚姻家庭继承", "依法规定",
         "税收财政预算银行货币价格审计统计会计金融" * 4]

T = tempfile.mkdtemp(prefix="flow-onnx-export-")
try:
    write_laws(os.path.join(T, "tree"), 11, laws=10, articles=10, longest=60, comma=True)
    graph = os.path.join(T, "g.graph")
    with open(graph, "w") as f:
        f.write("""docs = source { path = "%s/tree"  labels = folders }
c = clean { input = docs }
s = split { corpus = c  ratios = [0.6, 0.2, 0.2]  seed = 3 }
tok = bpe { text = [s.train]  vocab_size = 150 }
enc = encode { corpus = s  tokenizer = tok  max_len = 48 }
pt = pretrain { train = enc.train  dev = enc.dev  tokenizer = tok  hidden = 128  layers = 2  heads = 4
                intermediate = 256  max_len = 128  batch = 8  max_steps = 20  lr = 0.002 }
ft = finetune { train = enc.train  dev = enc.dev  base = pt  clean = c  batch = 8  max_steps = 60  lr = 0.005
                max_len = 48 }
base = baseline { train = s.train  dev = s.dev  test = s.test  clean = c  l2 = [1e-4]  epochs = 2 }
trim = trim-vocab { model = ft  corpus = s.test  coverage = 0.98  tokenizer = tok }
newterms = source { path = "%s/new_terms.txt" }
ext = extend-vocab { model = ft  terms = [newterms] }
pr = prune { model = ft  dev = s.dev  head_ratio = 0.5  ffn_ratio = 0.4  rounds = 2 }
qpr = quantize { model = pr  bits = 8  method = rtn }
q8 = quantize { model = ft  bits = 8  method = rtn }
q8g = quantize { model = ft  calibration = s.train  bits = 8  calibration_sequences = 40 }
q4a32 = quantize { model = ft  calibration = s.train  bits = 4  group = 32  calibration_sequences = 40 }
q4s32 = quantize { model = ft  bits = 4  group = 32  sym = true  method = rtn }
q4a64 = quantize { model = ft  bits = 4  group = 64  method = rtn }
q4s64 = quantize { model = ft  calibration = s.train  bits = 4  group = 64  sym = true  act_order = true
                   calibration_sequences = 40 }
q4a128 = quantize { model = ft  calibration = s.train  bits = 4  group = 128  calibration_sequences = 40 }
q4s128 = quantize { model = ft  bits = 4  group = 128  sym = true  method = rtn }
qnf4 = quantize { model = ft  bits = 4  group = 64  codebook = nf4  method = rtn }
qnone = quantize { model = ft  policy = none  method = rtn }
q8e = quantize { model = ft  bits = 8  method = rtn  embeddings = int8 }
q4e64 = quantize { model = ft  bits = 4  group = 64  method = rtn  embeddings = uint4  scales = f16 }
""" % (T, T))
    with open(os.path.join(T, "new_terms.txt"), "w") as f:
        f.write("税收财政预算\n判处徒刑\n婚姻家庭继承\n")
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
    ft = keys["ft"]
    model_json = json.loads(run([FLOW, "cat", ft, "model.json", "--cache", cache]).stdout)
    labels = model_json["labels"]
    V = model_json["config"]["vocab_size"]

    enc_ids, offs = read_encoded(cache, keys["enc"], "test")
    seqs = [enc_ids[offs[i]:offs[i + 1]] for i in range(len(offs) - 1)]
    tb = test_batches(seqs)
    tb_ref = flow_logits(cache, ft, tb)
    variants = {"opset17": [], "opset20": ["--opset", "20"], "external": ["--external-data"]}
    rng = np.random.default_rng(5)
    batches = [random_batch(rng, B, L, V) for B in (1, 7) for L in (9, 128)]
    refs = flow_logits(cache, ft, batches)
    worst = {}
    print("flow logits: max |.| %.3f, spread over rows %.3f" % (max(np.abs(r).max() for r in refs),
                                                              max(np.ptp(r, axis=0).max() for r in refs if len(r) > 1)))
    for name, extra in variants.items():
        d = os.path.join(T, name)
        r = run([FLOW, "export", ft, "--format", "onnx", "-o", d, "--cache", cache] + extra)
        path = os.path.join(d, "model.onnx")
        check("%s: model.onnx.data written iff external" % name,
              os.path.exists(path + ".data") == (name == "external"))
        try:
            onnx.checker.check_model(path, full_check=True)
        except Exception as ex:  # noqa: BLE001 - report any checker failure
            check("%s: onnx.checker: %s" % (name, ex), False)
        m = onnx.load(path)
        ops = ops_of(m)
        opset = {o.domain: o.version for o in m.opset_import}
        check("%s: opset %s" % (name, opset), opset.get("", 0) == (20 if name == "opset20" else 17))
        check("%s: LayerNormalization used" % name, ("", "LayerNormalization") in ops)
        if name == "opset20":
            check("opset20: Gelu and no Erf", ("", "Gelu") in ops and ("", "Erf") not in ops)
        else:
            check("%s: Erf GELU below opset 20" % name, ("", "Erf") in ops and ("", "Gelu") not in ops)
        check("%s: fp32 uses the default domain only: %s" % (name, sorted(ops)), all(dom == "" for dom, _ in ops))
        ins = [(i.name, [dd.dim_param or dd.dim_value for dd in i.type.tensor_type.shape.dim]) for i in m.graph.input]
        check("%s: inputs %s" % (name, ins),
              ins == [("input_ids", ["batch", "sequence"]), ("attention_mask", ["batch", "sequence"]),
                      ("token_type_ids", ["batch", "sequence"])])
        check("%s: output logits" % name, [o.name for o in m.graph.output] == ["logits"])
        cfg = json.load(open(os.path.join(d, "config.json")))
        check("%s: config labels" % name, cfg["labels"] == labels and cfg["id2label"]["0"] == labels[0])
        check("%s: config max_length" % name, cfg["max_length"] == 48 and cfg["max_position_embeddings"] == 128)
        check("%s: tokenizer.json" % name, os.path.exists(os.path.join(d, "tokenizer.json")))
        check("%s: clean.json is the model's" % name, cfg["cleaning"] == "clean.json" and
              open(os.path.join(d, "clean.json"), "rb").read() == read_part(cache, ft, "clean.json"))

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for (ids, types, mask), ref in zip(batches, refs):
            got = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
            check("%s: logits shape %s at batch %d seq %d" % (name, got.shape, *ids.shape),
                  got.shape == (ids.shape[0], len(labels)))
            if got.shape == ref.shape:
                diff = np.abs(got - ref).max()
                scale = max(1.0, np.abs(ref).max())
                check("%s: batch %d seq %d: max logit diff %.2e" % (name, ids.shape[0], ids.shape[1], diff),
                      diff <= 1e-4 * scale)
                worst[name] = max(worst.get(name, 0.0), diff)
        if name == "opset17":
            # argmax agreement on the test set: every unit of the corpus, batched by 7
            check("test set has sequences (%d)" % len(seqs), len(seqs) >= 20)
            agree = total = 0
            for (ids, types, mask), ref in zip(tb, tb_ref):
                got = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
                agree += int((ref.argmax(1) == got.argmax(1)).sum())
                total += len(ids)
            check("argmax agreement %d/%d" % (agree, total), total and agree >= 0.995 * total)
            print("argmax agreement on the test set: %d/%d" % (agree, total))

            # raw text -> tokenizer.json -> ONNX Runtime == flow classify --all
            if Tokenizer:
                tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
                tok.enable_truncation(cfg["max_length"])
                fo = run([FLOW, "classify", ft, "--all", "--cache", cache], "\n".join(texts) + "\n").stdout
                fprobs = [json.loads(l.split("\t")[2]) for l in fo.splitlines()]
                check("classify printed one line per text", len(fprobs) == len(texts))
                for text, fp in zip(texts, fprobs):
                    e = tok.encode(text)
                    ids = np.array([e.ids], dtype=np.int64)
                    lg = sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                               "token_type_ids": np.zeros_like(ids)})[0][0]
                    p = np.exp(lg - lg.max())
                    p /= p.sum()
                    q = np.array([fp[l] for l in labels])
                    check("end to end %r: max prob diff %.2e" % (text[:12], np.abs(p - q).max()),
                          np.abs(p - q).max() < 1e-4)

    print("max |logit diff| vs flow per variant: " + ", ".join("%s %.2e" % kv for kv in worst.items()))

    # trimmed and extended vocabularies (trim-vocab, extend-vocab artifacts
    # through `flow export`): other word-embedding shapes, same graph
    for node in ("trim", "ext"):
        key = keys[node]
        nV = json.loads(run([FLOW, "cat", key, "model.json", "--cache", cache]).stdout)["config"]["vocab_size"]
        check("%s: vocabulary changed (%d -> %d)" % (node, V, nV), nV < V if node == "trim" else nV > V)
        d = os.path.join(T, node)
        run([FLOW, "export", key, "--format", "onnx", "-o", d, "--cache", cache])
        path = os.path.join(d, "model.onnx")
        checker(node, path)
        dims = initializer_dims(path)
        check("%s: word embeddings [%d, 128] (%s)" % (node, nV, dims.get("bert.embeddings.word_embeddings.weight")),
              dims.get("bert.embeddings.word_embeddings.weight") == [nV, 128])
        vb = [random_batch(np.random.default_rng(6), B, L, nV) for B in (1, 7) for L in (9, 128)]
        w = ort_vs_flow(node, path, vb, flow_logits(cache, key, vb))
        if Tokenizer:
            from_tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json")).get_vocab_size()
            check("%s: tokenizer.json has the model's %d tokens (%d)" % (node, nV, from_tok), from_tok == nV)
        print("%s (vocab %d): max |logit diff| vs flow %.2e" % (node, nV, w))

    # prune artifacts (stages/compress/prune.c, global scope: layers lose
    # different numbers of heads and neurons) and an int8 quantize node of
    # one, through `flow export`
    for node, scheme in (("pr", "fp32"), ("qpr", "int8")):
        key = keys[node]
        pc = json.loads(run([FLOW, "cat", key, "model.json", "--cache", cache]).stdout)["config"]
        lh, lf = pc["layer_heads"], pc["layer_ffn"]
        check("%s: pruned (heads %s of 4, FFN %s of 256)" % (node, lh, lf),
              sum(lh) < 8 and sum(lf) < 512 and min(lh) >= 1)
        d = os.path.join(T, node)
        r = run([FLOW, "export", key, "--format", "onnx", "-o", d, "--cache", cache])
        path = os.path.join(d, "model.onnx")
        checker(node, path)
        dims = initializer_dims(path)
        suffix = ".weight.T" if scheme == "fp32" else ".int8.T"
        widths = [(dims.get("bert.encoder.layer.%d.attention.self.qkv%s" % (l, suffix), [0, 0])[1],
                   dims.get("bert.encoder.layer.%d.intermediate.dense%s" % (l, suffix), [0, 0])[1]) for l in (0, 1)]
        check("%s: per-layer (3A, FFN) %s from heads %s, FFN %s" % (node, widths, lh, lf),
              widths == [(3 * 32 * lh[l], lf[l]) for l in (0, 1)])
        cfg = json.load(open(os.path.join(d, "config.json")))
        check("%s: precision %s" % (node, cfg["precision"]), cfg["precision"] == scheme)
        refs_p = flow_logits(cache, key, batches)
        if scheme == "fp32":
            w = ort_vs_flow(node, path, batches, refs_p)
        else:
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            w = 0.0
            for (ids, types, mask), ref in zip(batches, refs_p):
                got = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
                if check("%s: logits shape" % node, got.shape == ref.shape):
                    w = max(w, relative_mse(got, ref))
            check("%s: relative logit MSE vs flow's %.2e < 1e-3" % (node, w), w < 1e-3)
        print("%s (heads %s, FFN %s): ORT vs flow %.2e" % (node, lh, lf, w))

    # a pruned shape (tests/tools/onnx_quant_tool SPEC+pruned: layers with
    # 2 and 3 heads, FFN widths 128 and 86, cut from the trained model), fp32
    # and int8: the attention and FFN widths come from the tensors
    for spec, bound in (("fp32+pruned", 1e-4), ("int8+pruned", None)):
        d = os.path.join(T, spec)
        run([QTOOL, cache, ft, spec, "export", d])
        path = os.path.join(d, "model.onnx")
        checker(spec, path)
        dims = initializer_dims(path)
        if spec.startswith("fp32"):
            widths = [(dims.get("bert.encoder.layer.%d.attention.self.qkv.weight.T" % l, [0, 0])[1],
                       dims.get("bert.encoder.layer.%d.intermediate.dense.weight.T" % l, [0, 0])[1]) for l in (0, 1)]
        else:
            widths = [(dims.get("bert.encoder.layer.%d.attention.self.qkv.int8.T" % l, [0, 0])[1],
                       dims.get("bert.encoder.layer.%d.intermediate.dense.int8.T" % l, [0, 0])[1]) for l in (0, 1)]
        check("%s: per-layer (3A, FFN) %s == [(192, 128), (288, 86)]" % (spec, widths), widths == [(192, 128), (288, 86)])
        refs_p = quant_logits(cache, ft, spec, batches)
        if bound:
            w = ort_vs_flow(spec, path, batches, refs_p, bound)
        else:
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            w = 0.0
            for (ids, types, mask), ref in zip(batches, refs_p):
                got = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
                if check("%s: logits shape" % spec, got.shape == ref.shape):
                    w = max(w, relative_mse(got, ref))
            check("%s: relative logit MSE vs flow's %.2e < 1e-3" % (spec, w), w < 1e-3)
        print("%s: ORT vs flow %.2e" % (spec, w))

    # the above-2-GB path on a small model: flow_testhooks with
    # FLOW_TEST_ONNX_INLINE_LIMIT (tests/hooks/onnx_inline_limit.c) takes
    # the size limit as 100 kB, so without --external-data the initializers
    # go to model.onnx.data, which ONNX Runtime loads; a limit above the
    # model's size keeps them inline
    hooks = os.path.join(BUILD, "flow_testhooks")
    if check("flow_testhooks built", os.access(hooks, os.X_OK)):
        for limit, want in (("100000", True), ("100000000", False)):
            d = os.path.join(T, "limit" + limit)
            env = dict(os.environ, FLOW_TEST_ONNX_INLINE_LIMIT=limit)
            r = subprocess.run([hooks, "export", ft, "--format", "onnx", "-o", d, "--cache", cache],
                               capture_output=True, text=True, env=env)
            check("limit %s: export ok (%s)" % (limit, r.stderr.strip()[-300:]), r.returncode == 0)
            path = os.path.join(d, "model.onnx")
            has = os.path.exists(path + ".data")
            check("limit %s: model.onnx.data %s (%s)" % (limit, "written" if want else "absent", r.stderr.strip()),
                  has == want and (("in model.onnx.data" in r.stderr) == want))
            m = onnx.load(path, load_external_data=False)
            ext = [t.name for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
            big = [t.name for t in m.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL and
                   len(t.raw_data) >= 1024]
            check("limit %s: %d external, %d large inline initializers" % (limit, len(ext), len(big)),
                  (len(ext) > 10 and not big) if want else (not ext and len(big) > 10))
            checker("limit " + limit, path)
            ort_vs_flow("limit " + limit, path, batches, refs)
    d = os.path.join(T, "nohook")
    subprocess.run([FLOW, "export", ft, "--format", "onnx", "-o", d, "--cache", cache], capture_output=True,
                   env=dict(os.environ, FLOW_TEST_ONNX_INLINE_LIMIT="100000"))
    check("flow itself has no hook: its export stays inline",
          os.path.exists(os.path.join(d, "model.onnx")) and not os.path.exists(os.path.join(d, "model.onnx.data")))

    # quantize artifacts (stages/compress/quantize.c) through `flow export`:
    # every encoder Linear in the artifact's own codes, scales and zeros
    # (compared tensor by tensor with its weights part), ONNX Runtime's
    # logits against flow's quantized forward (clf_logits_tool runs the
    # artifact on flow's integer kernels, as flow classify does) within the
    # quantization tests' bound: relative logit MSE < 1e-3 (int8), < 0.05
    # (4-bit); argmax agreement >= 99.5% on the test set
    from safetensors.numpy import load as st_load
    LIN = [("attention.self.qkv", ("attention.self.query", "attention.self.key", "attention.self.value")),
           ("attention.output.dense", ("attention.output.dense",)),
           ("intermediate.dense", ("intermediate.dense",)), ("output.dense", ("output.dense",))]

    def artifact_linear(w, l, parts, scheme, group):
        """codes [N, K] (ints), scales [N] or [N, G], zeros [N, G] of a
        quantized Linear in the artifact (stages/model/qartifact.h layout)"""
        codes, scales, zeros = [], [], []
        for p in parts:
            name = "bert.encoder.layer.%d.%s.weight" % (l, p)
            c = w[name]
            if scheme == "int8":
                codes.append(c.astype(np.int64))
            else:
                N, half = c.shape
                g2 = group // 2
                blocks = c.reshape(N, -1, g2).astype(np.int64)
                codes.append(np.concatenate([blocks & 15, blocks >> 4], axis=2).reshape(N, -1))
                zeros.append(w[name + "_zero"].astype(np.int64) if name + "_zero" in w
                             else np.full((N, (2 * half) // group), 8, dtype=np.int64))
            scales.append(w[name + "_scale"].astype(np.float32))
        return (np.concatenate(codes), np.concatenate(scales),
                np.concatenate(zeros) if zeros else None)

    def onnx_linear(inits, l, name, scheme, group):
        """the same from the export's initializers (stages/export/onnx_linear.c)"""
        pre = "bert.encoder.layer.%d.%s" % (l, name)
        if scheme == "int8":
            return inits[pre + ".int8.T"].T.astype(np.int64), inits[pre + ".scale"], None
        B = inits[pre + ".uint4"].astype(np.int64)            # [N, G, g/2], code k at byte k/2, low first
        N, G, _ = B.shape
        codes = np.stack([B & 15, B >> 4], axis=3).reshape(N, G * group)
        Z = inits[pre + ".zeros"].astype(np.int64).reshape(N, -1)
        zeros = np.stack([Z & 15, Z >> 4], axis=2).reshape(N, -1)[:, :G]
        return codes, inits[pre + ".scales"].reshape(N, G), zeros

    qnodes = [("q8", "int8", 0, 17, 1e-3), ("q8", "int8", 0, 20, 1e-3), ("q8g", "int8", 0, 21, 1e-3),
              ("q4a32", "uint4", 32, 17, 0.05), ("q4s32", "uint4", 32, 20, 0.05),
              ("q4a64", "uint4", 64, 17, 0.05), ("q4s64", "uint4", 64, 17, 0.05),
              ("q4a128", "uint4", 128, 17, 0.05), ("q4s128", "uint4", 128, 21, 0.05),
              ("q8e", "int8", 0, 17, 1e-3), ("q4e64", "uint4", 64, 20, 0.05)]
    # quantize nodes whose embedding tables are quantized too: the export
    # holds them as fp32 rows, exactly the artifact's dequantized codes
    EMB_NODES = {"q8e": "int8", "q4e64": "uint4"}

    def artifact_embedding(w, name, emb, group):
        """an embedding table of the artifact dequantized as flow's loader
        does (qartifact.h): scale * code, or scale * (code - zero), float32"""
        c = w[name]
        s = w[name + "_scale"].astype(np.float32)
        if emb == "int8":
            return s[:, None] * c.astype(np.float32)
        R = c.shape[0]
        b = c.reshape(R, -1, group // 2).astype(np.int64)
        codes = np.concatenate([b & 15, b >> 4], axis=2).reshape(R, -1)
        z = w[name + "_zero"].astype(np.int64) if name + "_zero" in w else np.full(s.shape, 8, dtype=np.int64)
        return np.repeat(s, group, axis=1) * (codes - np.repeat(z, group, axis=1)).astype(np.float32)
    for node, scheme, group, opset, bound in qnodes:
        key = keys[node]
        name = "%s-opset%d" % (node, opset)
        d = os.path.join(T, name)
        r = run([FLOW, "export", key, "--format", "onnx", "-o", d, "--cache", cache, "--opset", str(opset)])
        precision = "int8" if scheme == "int8" else "uint4-g%d" % group
        check("%s: stderr names the precision (%s)" % (name, r.stderr.strip()), precision in r.stderr)
        path = os.path.join(d, "model.onnx")
        checker(name, path)
        m = onnx.load(path)
        op = ("", "MatMulInteger") if scheme == "int8" else ("com.microsoft", "MatMulNBits")
        qn = [n for n in m.graph.node if ((n.domain or ""), n.op_type) == op]
        check("%s: %d %s nodes for 4 Linears x 2 layers" % (name, len(qn), op[1]), len(qn) == 8)
        if scheme != "int8":
            bs = {a.i for n in qn for a in n.attribute if a.name == "block_size"}
            check("%s: MatMulNBits block_size %s == group %d" % (name, bs, group), bs == {group})
        fp32_mm = [n for n in m.graph.node if n.op_type == "MatMul" and any(".weight.T" in i for i in n.input)]
        check("%s: only pooler and classifier stay fp32 MatMul (%d)" % (name, len(fp32_mm)), len(fp32_mm) == 2)
        cfg = json.load(open(os.path.join(d, "config.json")))
        qmeta = cfg.get("quantization") or {}
        check("%s: config precision %s, quantization %s" % (name, cfg["precision"], qmeta),
              cfg["precision"] == precision and qmeta.get("scheme") == scheme and
              (scheme == "int8" or qmeta.get("group") == group))
        # the artifact's own codes, scales and zeros, nothing requantized
        w = st_load(read_part(cache, key, "weights"))
        inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
        same = True
        for l in (0, 1):
            for oname, parts in LIN:
                ac, ascale, az = artifact_linear(w, l, parts, scheme, group)
                oc, oscale, oz = onnx_linear(inits, l, oname, scheme, group)
                ok = (ac.shape == oc.shape and (ac == oc).all() and np.array_equal(ascale, oscale) and
                      (az is None or np.array_equal(az, oz)))
                if not ok:
                    check("%s: layer %d %s: codes/scales/zeros are the artifact's" % (name, l, oname), False)
                same = same and ok
        if node in EMB_NODES:
            for en in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
                tn = "bert.embeddings.%s.weight" % en
                stored = "%s/%s" % (w[tn].dtype, EMB_NODES[node])
                want = artifact_embedding(w, tn, EMB_NODES[node], group)
                got = inits.get(tn)
                check("%s: %s stored %s, exported as its fp32 rows" % (name, tn, stored),
                      w[tn].dtype in (np.int8, np.uint8) and got is not None and got.dtype == np.float32 and
                      np.array_equal(got, want))
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        worst = 0.0
        for (ids, types, mask), ref in zip(batches, flow_logits(cache, key, batches)):
            got = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
            if check("%s: logits shape %s at batch %d seq %d" % (name, got.shape, *ids.shape), got.shape == ref.shape):
                worst = max(worst, relative_mse(got, ref))
        check("%s: relative logit MSE vs flow's quantized forward %.2e < %g" % (name, worst, bound), worst < bound)
        agree = total = 0
        vs_fp32 = 0.0
        for (ids, types, mask), ref, fp in zip(tb, flow_logits(cache, key, tb), tb_ref):
            got = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
            agree += int((ref.argmax(1) == got.argmax(1)).sum())
            total += len(ids)
            vs_fp32 = max(vs_fp32, relative_mse(ref, fp))
        check("%s: argmax agreement %d/%d" % (name, agree, total), total and agree >= 0.995 * total)
        check("%s: flow's quantized model is not its fp32 model (relative MSE %.2e)" % (name, vs_fp32), vs_fp32 > 0)
        print("%s: own codes/scales/zeros %s; ORT vs flow quantized: relative MSE %.2e, argmax %d/%d "
              "(flow quantized vs fp32: %.2e)" % (name, "yes" if same else "NO", worst, agree, total, vs_fp32))
        if node in ("q8", "q4a64") and opset == 17 and Tokenizer:
            # raw text -> tokenizer.json -> ONNX Runtime == flow classify --all of the quantize artifact
            tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            tok.enable_truncation(cfg["max_length"])
            fo = run([FLOW, "classify", key, "--all", "--cache", cache], "\n".join(texts) + "\n").stdout
            for text, line in zip(texts, fo.splitlines()):
                fp = json.loads(line.split("\t")[2])
                ids = np.array([tok.encode(text).ids], dtype=np.int64)
                lg = sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                           "token_type_ids": np.zeros_like(ids)})[0][0]
                p = np.exp(lg - lg.max())
                p /= p.sum()
                diff = np.abs(p - np.array([fp[lab] for lab in labels])).max()
                check("%s end to end %r: max prob diff %.2e" % (name, text[:12], diff), diff < 1e-3)

    # policy none: a quantize artifact with nothing quantized exports as fp32
    d = os.path.join(T, "qnone")
    run([FLOW, "export", keys["qnone"], "--format", "onnx", "-o", d, "--cache", cache])
    cfg = json.load(open(os.path.join(d, "config.json")))
    check("qnone: precision fp32 (%s)" % cfg["precision"], cfg["precision"] == "fp32")
    ort_vs_flow("qnone", os.path.join(d, "model.onnx"), batches, refs)

    # same artifact, same options -> same bytes
    again = os.path.join(T, "again")
    run([FLOW, "export", ft, "--format", "onnx", "-o", again, "--cache", cache])
    for f in ("model.onnx", "config.json", "tokenizer.json", "clean.json"):
        check("export is deterministic: %s" % f,
              open(os.path.join(again, f), "rb").read() == open(os.path.join(T, "opset17", f), "rb").read())

    # bad requests: exit 2 with a message that says what and what to do
    bad = [([keys["base"]], "no ONNX mapping"),
           ([keys["pt"]], "masked LM"),
           ([ft, "--opset", "16"], "below what the model needs"),
           ([ft, "--opset", "99"], "writes opsets 17..21"),
           ([ft, "--opset", "x"], "not an opset number"),
           ([keys["qnf4"]], "no ONNX operator runs 4-bit")]
    for args, msg in bad:
        r = run([FLOW, "export"] + args[:1] + ["--format", "onnx", "-o", os.path.join(T, "bad"), "--cache", cache]
                + args[1:], expect=None)
        check("export %s: exit %d, stderr %r" % (" ".join(args[1:]) or args[0][:8], r.returncode, r.stderr.strip()),
              r.returncode == 2 and msg in r.stderr)
    r = run([FLOW, "export", keys["q8"], "--format", "hf", "-o", os.path.join(T, "badhf"), "--cache", cache], expect=None)
    check("hf export of a quantize artifact refused: exit %d, %r" % (r.returncode, r.stderr.strip()),
          r.returncode == 2 and "quantized model" in r.stderr and "--format onnx" in r.stderr)
    r = run([FLOW, "export", keys["qnone"], "--format", "hf", "-o", os.path.join(T, "nonehf"), "--cache", cache])
    check("hf export of a policy-none quantize artifact (nothing quantized) works",
          os.path.exists(os.path.join(T, "nonehf", "model.safetensors")))
finally:
    shutil.rmtree(T, ignore_errors=True)

check.finish()
print("onnx_export_test: all checks passed")
