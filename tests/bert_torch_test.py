#!/usr/bin/env python3
"""bert_torch_test.py — our C BERT against HuggingFace transformers.

Runs $FLOW_BUILD/bert_tool (tests/tools/bert_tool.c) for the MLM and the
classification head: it initialises a small seeded model, runs one forward
and backward with dropout off, and dumps weights, inputs, logits, loss and
the flat gradient.  This script loads the weights by their state-dict names
into BertForMaskedLM / BertForSequenceClassification with the same config,
runs the same batch, and compares logits, loss and EVERY gradient (1e-4,
relative to each tensor's scale).  It also checks that our tensor table
names exactly the model's parameters (apart from the tied decoder aliases).
Each head runs twice: the plain shape, and a shrunk one (unequal heads and
FFN widths per layer, the torch model's Linear modules resized to match).
Exit 77 when torch/transformers are missing.
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification
except Exception as exc:  # pragma: no cover - environment dependent
    print(f"bert_torch_test: skipped, needs numpy, torch, transformers ({exc})")
    sys.exit(77)

TOL = 1e-4
failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL:", msg)


def close(name, ours, ref, tol=TOL):
    """max |a-b| <= tol * max(1, max|ref|) — relative to the tensor's scale."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        fail(f"{name}: shape {ours.shape} vs torch {ref.shape}")
        return
    scale = max(1e-3, float(np.abs(ref).max()) if ref.size else 0.0)
    err = float(np.abs(ours - ref).max()) if ref.size else 0.0
    if not err <= tol * scale:
        fail(f"{name}: max abs error {err:.3g} (scale {scale:.3g})")
    return err / scale


def shrink(model, layers):
    """Gives each encoder layer its own attention width (heads x head size)
    and FFN width, as a pruned model has: the Linear modules are replaced
    by ones of the layer's shape (transformers' attention splits heads with
    view(..., -1, head_size), so it follows the module's width)."""
    H = model.config.hidden_size
    for l, (heads, ffn, d) in enumerate(layers):
        layer = model.bert.encoder.layer[l]
        att = layer.attention
        for nm in ("query", "key", "value"):
            setattr(att.self, nm, torch.nn.Linear(H, heads * d))
        att.self.num_attention_heads = heads
        att.self.all_head_size = heads * d
        att.output.dense = torch.nn.Linear(heads * d, H)
        layer.intermediate.dense = torch.nn.Linear(H, ffn)
        layer.output.dense = torch.nn.Linear(ffn, H)


def check_export(d, plain_mode, mode, ids, types, mask, logits_ours):
    """The tool's model exported for transformers (hf/, as `flow export`
    writes it; a shrunk model zero-padded to one shape) loads with
    from_pretrained and gives our logits."""
    cls = BertForMaskedLM if plain_mode == "mlm" else BertForSequenceClassification
    hf = cls.from_pretrained(os.path.join(d, "hf")).eval()
    with torch.no_grad():
        out = hf(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
    if plain_mode == "mlm":
        rows = torch.from_numpy(np.fromfile(os.path.join(d, "rows.i32"), dtype=np.int32).astype(np.int64))
        ref = out.reshape(ids.numel(), -1)[rows].numpy()
    else:
        ref = out.numpy()
    close(f"{mode} exported logits", logits_ours.reshape(ref.shape), ref)


def run(tool, mode, seed, shrunk=False):
    d = tempfile.mkdtemp(prefix=f"flow-bert-{mode}-")
    subprocess.run([tool, d, mode, str(seed)] + (["shrunk"] if shrunk else []), check=True)
    cfg, layers = {}, []
    for line in open(os.path.join(d, "config.txt")):
        k, *v = line.split()
        if k == "layer":
            layers.append((int(v[1]), int(v[2])))
        else:
            cfg[k] = v[0] if k == "mode" else int(v[0])
    mode_name = mode + (" shrunk" if shrunk else "")
    tensors = []
    for line in open(os.path.join(d, "tensors.txt")):
        name, off, numel, s0, s1 = line.split()
        tensors.append((name, int(off), int(numel), int(s0), int(s1)))

    def arr(name, dt):
        return np.fromfile(os.path.join(d, name), dtype=dt)

    params, grads = arr("params.f32", np.float32), arr("grads.f32", np.float32)
    B, T = cfg["B"], cfg["T"]
    hf = BertConfig(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden"],
                    num_hidden_layers=cfg["layers"],
                    num_attention_heads=cfg["hidden"] // cfg["head_size"],
                    intermediate_size=max(f for _, f in layers), hidden_act="gelu",
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                    max_position_embeddings=cfg["max_len"], type_vocab_size=cfg["type_vocab"],
                    layer_norm_eps=1e-12, pad_token_id=0, num_labels=cfg["num_labels"],
                    tie_word_embeddings=True)
    torch.manual_seed(0)
    model = (BertForMaskedLM if mode == "mlm" else BertForSequenceClassification)(hf)
    if shrunk:
        shrink(model, [(h, f, cfg["head_size"]) for h, f in layers])
    model.eval()  # dropout is 0 anyway; eval keeps it deterministic
    mode, plain_mode = mode_name, mode

    pnames = dict(model.named_parameters(remove_duplicate=True))
    ours_names = {t[0] for t in tensors}
    for name in pnames:
        if name not in ours_names:
            fail(f"{mode}: torch parameter {name} is missing from our tensor table")
    with torch.no_grad():
        for name, off, numel, s0, s1 in tensors:
            p = model.get_parameter(name)
            if tuple(p.shape) != ((s0,) if p.dim() == 1 else (s0, s1)):
                fail(f"{mode}: {name} shape {tuple(p.shape)} vs ours {(s0, s1)}")
                continue
            p.copy_(torch.from_numpy(params[off:off + numel].copy()).reshape(p.shape))
    if plain_mode == "mlm":
        dec = model.cls.predictions.decoder
        if dec.weight.data_ptr() != model.bert.embeddings.word_embeddings.weight.data_ptr():
            fail("mlm: decoder weight is not tied to the word embeddings in torch")

    ids = torch.from_numpy(arr("ids.i32", np.int32).astype(np.int64)).reshape(B, T)
    types = torch.from_numpy(arr("types.i32", np.int32).astype(np.int64)).reshape(B, T)
    mask = torch.from_numpy(arr("mask.i32", np.int32).astype(np.int64)).reshape(B, T)
    logits_ours = arr("logits.f32", np.float32)
    loss_ours = float(arr("loss.f32", np.float32)[0])
    model.zero_grad()
    if plain_mode == "mlm":
        mlm_labels = torch.from_numpy(arr("mlm_labels.i32", np.int32).astype(np.int64)).reshape(B, T)
        out = model(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=mlm_labels)
        loss = out.loss
        rows = arr("rows.i32", np.int32)
        ref_logits = out.logits.reshape(B * T, -1)[torch.from_numpy(rows.astype(np.int64))]
        close(f"{mode} logits", logits_ours.reshape(len(rows), -1), ref_logits.detach().numpy())
    else:
        labels = torch.from_numpy(arr("labels.i32", np.int32).astype(np.int64))
        w = torch.from_numpy(arr("class_weights.f32", np.float32))
        out = model(input_ids=ids, token_type_ids=types, attention_mask=mask)
        loss = F.cross_entropy(out.logits, labels, weight=w)
        close(f"{mode} logits", logits_ours.reshape(B, -1), out.logits.detach().numpy())
    close(f"{mode} loss", [loss_ours], [loss.item()])
    check_export(d, plain_mode, mode, ids, types, mask, logits_ours)
    loss.backward()
    worst = 0.0
    for name, off, numel, s0, s1 in tensors:
        g = model.get_parameter(name).grad
        ref = np.zeros(numel) if g is None else g.detach().numpy().reshape(-1)
        r = close(f"{mode} grad {name}", grads[off:off + numel], ref)
        worst = max(worst, r or 0.0)
    print(f"{mode}: loss ours {loss_ours:.6f} torch {loss.item():.6f}; "
          f"{len(tensors)} gradients, worst relative error {worst:.2e}")


def main():
    build = os.environ.get("FLOW_BUILD")
    tool = os.path.join(build, "bert_tool") if build else None
    if not tool or not os.access(tool, os.X_OK):
        print(f"bert_torch_test: FAIL: bert_tool not found (FLOW_BUILD={build!r}); build the project first")
        return 1
    torch.set_num_threads(2)
    torch.set_default_dtype(torch.float32)
    for mode in ("mlm", "cls"):
        run(tool, mode, 11)
        run(tool, mode, 12, shrunk=True)
    if failures:
        print(f"bert_torch_test: {failures} failures")
        return 1
    print("bert_torch_test: all comparisons passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
