#!/usr/bin/env python3
"""tokenizer_hf_test.py — our tokenizer.json loaded by HuggingFace
`tokenizers` must give exactly the ids of our encoder (tok_tool, the same
library the encode stage uses) on the held-out part of a small real slice
of the legal corpus, with and without byte fallback, and decode back.

Slice: the laws of two departments, cleaned by tests/bench/clean_legal.py;
files sorted by name, every 5th file held out (a split by law).
Exit 77 (skip) when tokenizers, the corpus or the tool is missing."""
import os, subprocess, sys, tempfile

try:
    from tokenizers import Tokenizer
except ImportError:
    print("SKIP: python package 'tokenizers' is not installed")
    sys.exit(77)

src = os.environ.get("FLOW_SRC", os.path.join(os.path.dirname(__file__), ".."))
build = os.environ.get("FLOW_BUILD", os.path.join(src, "build"))
data = os.environ.get("FLOW_DATA", os.path.join(src, "..", "shared", "data"))
legal = os.path.join(data, "legal")
tool = os.path.join(build, "tok_tool")
if not os.path.isdir(os.path.join(legal, "laws")):
    print("SKIP: legal corpus not found at", legal)
    sys.exit(77)
if not os.access(tool, os.X_OK):
    print("SKIP: tok_tool not built at", tool)
    sys.exit(77)
sys.path.insert(0, os.path.join(src, "tests", "bench"))
from clean_legal import clean_file

train, test = [], []
for dept in ("刑法", "社会法"):
    d = os.path.join(legal, "laws", dept)
    for i, f in enumerate(sorted(os.listdir(d))):
        if f.endswith(".md"):
            (test if i % 5 == 4 else train).extend(clean_file(os.path.join(d, f)))
# a few lines that exercise the edges: whitespace kinds, Latin, digits,
# full-width forms, a rare character, forced terms glued together
test += ["第1条  ISO 9001\t标准，Ｕ盘３张。", "违约金违约金不可抗力的违约责任", "䶮䶮 x", "  "]
# fixed-seed random lines over a mixed alphabet: frequent Han characters,
# forced-term pieces, specials written in the text, every whitespace and
# script class, combining marks, astral characters, rare characters
import random
rnd = random.Random(7)
pool = (list("的法人民国家和本条规定应当责任违约金不可抗力") + ["违约金", "不可", "抗力", "[CLS]", "[MASK", "]"]
        + list(" \t\u3000\u00a0\u2003\u0085\u000b") + list("aZé\u0301ωЖ١٢３4〇々①Ⅳ")
        + list("，。、；：（）《》“”—…%$#@!?-_/\\") + ["\U0001F600", "\U00020000", "\u4dae", "\ufeff"])
# runs longer than the 256-character pre-token limit
test += ["的法人民国家" * 120, "abcxyz" * 110, " " * 300 + "x", "1234567890" * 60]
for _ in range(400):
    test.append("".join(rnd.choice(pool) for _ in range(rnd.randint(1, 120))))

failures = 0
with tempfile.TemporaryDirectory() as tmp:
    trainf, testf = os.path.join(tmp, "train.txt"), os.path.join(tmp, "test.txt")
    open(trainf, "w", encoding="utf-8").write("\n".join(train) + "\n")
    open(testf, "w", encoding="utf-8").write("\n".join(test) + "\n")
    for name, extra in (("plain", []), ("byte_fallback", ["--byte-fallback", "--coverage", "0.999"])):
        out = os.path.join(tmp, name)
        os.mkdir(out)
        subprocess.run([tool, "train", out, "--vocab", "3000", "--threads", "2",
                        "--terms", os.path.join(legal, "terms.txt"), trainf] + extra,
                       check=True, stdout=subprocess.DEVNULL)
        ours = subprocess.run([tool, "encode", os.path.join(out, "tokenizer.bin"), testf,
                               "--threads", "2"], check=True, capture_output=True,
                              text=True).stdout.split("\n")[:-1]
        hf = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
        encs = hf.encode_batch(test)
        assert len(ours) == len(test), (len(ours), len(test))
        bad = 0
        for line, enc, o in zip(test, encs, ours):
            o = [int(x) for x in o.split()]
            if enc.ids != o:
                bad += 1
                if bad <= 3:
                    print(f"[{name}] mismatch on {line[:60]!r}\n  hf:   {enc.ids[:30]}\n  ours: {o[:30]}")
            elif name == "byte_fallback" and hf.decode(o, skip_special_tokens=False) != "[CLS]" + line + "[SEP]":
                bad += 1
                print(f"[{name}] decode differs on {line[:60]!r}")
        ntok = sum(len(e.ids) for e in encs)
        print(f"[{name}] {len(test)} units, {ntok} ids: {bad} mismatches")
        failures += bad
sys.exit(1 if failures else 0)
