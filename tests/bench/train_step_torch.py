#!/usr/bin/env python3
"""train_step_torch.py — the PyTorch side of train_step_bench.sh.

One BertForMaskedLM training step (forward + backward + clip + AdamW) on the
same config, batch, masking rate and thread count as tests/bench/train_step.c;
prints tokens/s.  Usage mirrors train_step:
  train_step_torch.py --hidden 256 --layers 4 --heads 4 --inter 1024
                      --vocab 8000 --seq 128 --batch 8 --steps 5 --threads 2
                      [--mask 0.15]
Last line: RESULT tokens_per_s=... best_tokens_per_s=... (mean and best step)
"""
import argparse
import sys
import time

try:
    import torch
    from transformers import BertConfig, BertForMaskedLM
except Exception as exc:
    print(f"train_step_torch: needs torch and transformers ({exc})")
    sys.exit(77)

ap = argparse.ArgumentParser()
for name, dflt in [("hidden", 256), ("layers", 4), ("heads", 4), ("inter", 1024),
                   ("vocab", 8000), ("seq", 128), ("batch", 8), ("steps", 5), ("threads", 2)]:
    ap.add_argument(f"--{name}", type=int, default=dflt)
ap.add_argument("--mask", type=float, default=0.15)
ap.add_argument("--attn", default="eager", help="attention implementation: eager or sdpa")
a = ap.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(1)
cfg = BertConfig(vocab_size=a.vocab, hidden_size=a.hidden, num_hidden_layers=a.layers,
                 num_attention_heads=a.heads, intermediate_size=a.inter,
                 max_position_embeddings=512, hidden_act="gelu",
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
model = BertForMaskedLM._from_config(cfg, attn_implementation=a.attn)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
B, T = a.batch, a.seq
ids = torch.randint(5, a.vocab, (B, T))
labels = ids.clone()
if a.mask < 1:
    labels[torch.rand(B, T) >= a.mask] = -100
times = []
for step in range(a.steps + 1):
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=False)
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    dt = time.perf_counter() - t0
    if step > 0:
        times.append(dt)
    print(f"step {step}: {dt * 1e3:.1f} ms loss {out.loss.item():.4f}", file=sys.stderr)
mean = sum(times) / len(times)
print(f"torch {torch.__version__} threads {torch.get_num_threads()} attn {a.attn}: "
      f"step mean {mean * 1e3:.1f} ms best {min(times) * 1e3:.1f} ms")
print(f"RESULT tokens_per_s={B * T / mean:.0f} best_tokens_per_s={B * T / min(times):.0f}")
