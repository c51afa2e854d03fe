#!/usr/bin/env python3
"""clean_regex_test.py — the character filter of the cleaning library
(stages/text/text.c, run through tests/tools/clean_tool) against independent
Python definitions, over every Unicode scalar value:
  strict: exactly re.sub(r'[^\\u4e00-\\u9fa5a-zA-Z0-9\\(\\)\\·]', '', s) after
          full-width letters/digits are mapped to ASCII;
  legal:  the set documented in stages/text/text.h (Han ranges, ASCII letters and
          digits, ( ) . , % - / : ; and TEXT_LEGAL_PUNCT as written in the
          header), one space kept only between two ASCII letters/digits.
Exit 77 (skip) when clean_tool is not built."""
import os, re, subprocess, sys

src = os.environ.get("FLOW_SRC", os.path.join(os.path.dirname(__file__), ".."))
build = os.environ.get("FLOW_BUILD", os.path.join(src, "build"))
tool = os.path.join(build, "clean_tool")
if not os.access(tool, os.X_OK):
    print("SKIP: clean_tool not built at", tool)
    sys.exit(77)

def clean(mode, preset, text):
    r = subprocess.run([tool, mode, preset], input=text.encode("utf-8"), capture_output=True)
    if r.returncode != 0:
        sys.exit("clean_tool failed: " + r.stderr.decode())
    return r.stdout.decode("utf-8")

def normalise(ch):
    c = ord(ch)
    if 0xFF10 <= c <= 0xFF19 or 0xFF21 <= c <= 0xFF3A or 0xFF41 <= c <= 0xFF5A:
        return chr(c - 0xFEE0)
    return ch

SPACES = {0x20, 0x09, 0x0A, 0x0D, 0x3000, 0xA0, 0x202F, 0x205F} | set(range(0x2000, 0x200B))

# every scalar value except surrogates, in blocks separated by 'x' so the
# output can be compared block by block (the space rule needs context)
cps = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF]
text = "x" + "".join(chr(c) for c in cps) + "x"
failures = 0

# ---- strict ---------------------------------------------------------------
got = clean("unit", "strict", text).rstrip("\n")
want = re.sub(r'[^\u4e00-\u9fa5a-zA-Z0-9\(\)\·]', '', "".join(normalise(ch) for ch in text))
if got != want:
    failures += 1
    i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
    print("strict differs at output char %d: got %r want %r" % (i, got[i:i + 10], want[i:i + 10]))

# ---- legal ----------------------------------------------------------------
header = open(os.path.join(src, "stages", "text", "text.h"), encoding="utf-8").read()
punct = re.search(r'#define TEXT_LEGAL_PUNCT "([^"]*)"', header).group(1)
keep = set(punct) | set("().,%-/:;")
def legal_keeps(ch):
    c = ord(ch)
    return (0x4E00 <= c <= 0x9FFF or 0x3400 <= c <= 0x4DBF or c == 0x3007 or
            ch.isascii() and ch.isalnum() or ch in keep)
def legal(s):
    out, pending, last = [], False, ""
    for ch in s:
        ch = normalise(ch)
        if ord(ch) in SPACES:
            if last.isascii() and last.isalnum():
                pending = True
            continue
        if not legal_keeps(ch):
            continue
        if pending and ch.isascii() and ch.isalnum():
            out.append(" ")
        pending = False
        out.append(ch)
        last = ch
    return "".join(out)
got = clean("unit", "legal", text).rstrip("\n")
want = legal(text)
if got != want:
    failures += 1
    i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
    print("legal differs at output char %d: got %r want %r" % (i, got[i:i + 10], want[i:i + 10]))

# spaces between words, runs collapsed, none next to Han
for inp, exp in [("ISO  9001 标准", "ISO 9001标准"), ("甲 乙", "甲乙"), ("a\u3000\u3000b", "a b"),
                 ("Ａ　Ｂ", "A B"), ("a ★ b", "a b"), ("a. b", "a.b")]:
    g = clean("unit", "legal", inp).rstrip("\n")
    if g != exp:
        failures += 1
        print("legal(%r) = %r, want %r" % (inp, g, exp))

if failures:
    print("clean_regex_test: %d failures" % failures)
    sys.exit(1)
print("clean_regex_test: strict and legal presets agree over %d code points" % len(cps))
