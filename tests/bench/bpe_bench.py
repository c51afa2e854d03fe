#!/usr/bin/env python3
"""Helper of bpe_bench.sh: trains/encodes with HuggingFace tokenizers and
SentencePiece on the same cleaned text, with equivalent settings, and
prints the timings.  Run in a fresh process per measurement so that the
thread count (RAYON_NUM_THREADS) applies.

  bpe_bench.py hf-train TEXT TERMS VOCAB ALPHABET OUTDIR
  bpe_bench.py spm-train TEXT TERMS VOCAB THREADS OUTDIR
  bpe_bench.py hf-encode TOKENIZER.JSON TEXT
"""
import os, sys, time

def terms_of(path):
    out = []
    for line in open(path, encoding="utf-8-sig"):
        line = line.strip()
        if line and not line.startswith("#") and line not in out:
            out.append(line)
    return out

# the pre-tokenizer pattern of stages/tokenizer/hf_export.c
WS = r"[\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]"
PAT = (WS + r"{1,256}|\p{Han}{1,256}|[\p{L}\p{M}&&[^\p{Han}]]{1,256}"
       r"|[\p{N}&&[^\p{Han}]]{1,256}|.")

def hf_train(text, terms, vocab, alphabet, outdir):
    from tokenizers import Tokenizer, Regex, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PAT), behavior="isolated")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + terms_of(terms)
    tok.add_special_tokens(specials)
    tr = trainers.BpeTrainer(vocab_size=int(vocab), min_frequency=2, special_tokens=specials,
                             limit_alphabet=int(alphabet), max_token_length=16,
                             show_progress=False)
    t0 = time.perf_counter()
    tok.train([text], tr)
    dt = time.perf_counter() - t0
    tok.save(os.path.join(outdir, "hf_tokenizer.json"))
    print(f"{dt:.3f}")

def spm_train(text, terms, vocab, threads, outdir):
    import sentencepiece as spm
    t0 = time.perf_counter()
    spm.SentencePieceTrainer.train(
        input=text, model_prefix=os.path.join(outdir, "spm"), model_type="bpe",
        vocab_size=int(vocab), character_coverage=0.9995, num_threads=int(threads),
        user_defined_symbols=terms_of(terms), max_sentencepiece_length=16,
        input_sentence_size=0, max_sentence_length=1 << 20, minloglevel=2,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3)
    print(f"{time.perf_counter() - t0:.3f}")

def hf_encode(tokjson, text):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokjson)
    lines = open(text, encoding="utf-8").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    size = os.path.getsize(text)
    t0 = time.perf_counter()
    encs = tok.encode_batch(lines)
    dt = time.perf_counter() - t0
    ntok = sum(len(e.ids) for e in encs)
    print(f"{dt:.3f} {size / 1e6 / dt:.2f} {len(lines)} {ntok}")

cmd = sys.argv[1]
if cmd == "hf-train":
    hf_train(*sys.argv[2:7])
elif cmd == "spm-train":
    spm_train(*sys.argv[2:7])
elif cmd == "hf-encode":
    hf_encode(*sys.argv[2:4])
else:
    sys.exit(__doc__)
