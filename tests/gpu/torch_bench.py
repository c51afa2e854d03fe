#!/usr/bin/env python3
"""torch_bench.py — the PyTorch peers of tests/gpu/check.sh, on one GPU.

  1. encoder fp32: transformers' BertEncoder (6 layers, hidden 768, 12
     heads, FFN 3072), forward + backward of a random [batch, 512, 768]
     input with a padding mask, TF32 off: the same work as flow's
     tests/bench/encoder_gpu_bench.c, so their tokens/s form a ratio;
  2. BertForMaskedLM (vocab 30522) training steps in bf16 autocast with SDPA
     attention and AdamW: tokens/s and model-FLOPs utilisation against the
     card's dense bf16 peak (the issue's reference figure).
FLOPs counted like flow's bert_train_flops: 3 x forward, forward = per
layer 2*N*H*(4A + 2I) + 4*B*T*T*A, plus the MLM head 2*N*H*(H + V) over all
N = B*T positions (HF computes logits everywhere).
Prints one line per measurement.  Exit 77 without torch/transformers/CUDA.
"""
import argparse
import sys
import time

try:
    import torch
    import transformers
except ImportError as e:
    print(f"skip: {e}")
    sys.exit(77)

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity, fp32 accumulate) as written
# from the vendors' data sheets (not measured; check before quoting an MFU)
PEAKS = [("H200", 989.4), ("H100 SXM", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4),
         ("A100", 312.0), ("L40S", 362.1), ("RTX 4090", 165.2), ("RTX 3090", 71.0),
         ("RTX 3080", 59.5), ("RTX 3070", 40.6)]


def peak_for(name):
    for key, tf in PEAKS:
        if key in name:
            return tf
    return None


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def encoder_flops(B, T, H, L, I, A):
    N = B * T
    return 3 * L * (2 * N * H * (4 * A + 2 * I) + 4 * B * T * T * A)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("skip: torch sees no CUDA device")
        return 77
    dev = torch.device("cuda:0")
    name = torch.cuda.get_device_name(0)
    B, T, H, L, nh, I, V = a.batch, a.seq, 768, 6, 12, 3072, 30522
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {name}")
    cfg = transformers.BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=nh,
                                  intermediate_size=I, max_position_embeddings=T, attn_implementation="sdpa")
    mask = torch.ones(B, T, dtype=torch.long, device=dev)
    for b in range(B):
        mask[b, T - 37 * b % (T // 2):] = 0   # some padding, [CLS] always real
    mask[:, 0] = 1

    # 1. encoder fp32, TF32 off
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    enc = transformers.models.bert.modeling_bert.BertEncoder(cfg).to(dev).train()
    x = torch.randn(B, T, H, device=dev, requires_grad=True)
    ext = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min

    def enc_step():
        out = enc(x, attention_mask=ext)[0]
        out.backward(torch.ones_like(out))
    s = timed(enc_step, 2, a.iters)
    fl = encoder_flops(B, T, H, L, I, H)
    print(f"torch encoder fp32: {B * T / s:.0f} tokens/s, {fl / s / 1e12:.2f} TFLOP/s ({s * 1e3:.1f} ms/step)")
    del enc, x

    # 2. BertForMaskedLM, bf16 autocast, SDPA, AdamW
    model = transformers.BertForMaskedLM(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(5, V, (B, T), device=dev)
    labels = ids.clone()
    labels[torch.rand(B, T, device=dev) > 0.15] = -100

    def mlm_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    s = timed(mlm_step, 3, a.iters)
    fl = encoder_flops(B, T, H, L, I, H) + 3 * 2 * B * T * H * (H + V)
    peak = peak_for(name)
    mfu = f", MFU {100 * fl / s / 1e12 / peak:.1f}% of {peak} TFLOP/s dense bf16" if peak else \
        ", MFU unknown (no bf16 peak listed for this card)"
    print(f"torch BertForMaskedLM bf16 autocast sdpa: {B * T / s:.0f} tokens/s, "
          f"{fl / s / 1e12:.1f} TFLOP/s{mfu} ({s * 1e3:.1f} ms/step)")
    print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
