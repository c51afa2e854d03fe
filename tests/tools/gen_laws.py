#!/usr/bin/env python3
"""gen_laws.py ROOT SEED — the small generated law corpus the end-to-end
tests train on: 3 departments (folders) x 6 laws x 8 articles, each class
with its own characters, so a model can learn the labels in a few steps.
The Python cross-checks import write() for their own sizes."""
import os
import random
import sys

COMMON = "的和或者应当依法规定本法国家人员"
CLASSES = {"甲类": "税收财政预算银行货币价格审计统计会计金融",
           "乙类": "刑罚犯罪判处徒刑拘役罚金没收自首缓刑剥夺",
           "丙类": "婚姻家庭继承收养合同物权抵押债务赔偿侵权"}
NUM = "一二三四五六七八九十"


def write(root, seed, laws=6, articles=8, longest=40, comma=False):
    """laws files per class folder under root, articles of 12..longest
    characters each (comma: a full-width comma after the eighth); seeds
    the module's random, as the callers always did."""
    random.seed(seed)
    for lab, chars in CLASSES.items():
        os.makedirs(os.path.join(root, lab), exist_ok=True)
        for k in range(laws):
            with open(os.path.join(root, lab, "%s法%d.md" % (lab, k)), "w") as f:
                f.write("# %s法%d\n\n<!-- INFO END -->\n\n" % (lab, k))
                for i in range(articles):
                    n = random.randint(12, longest)
                    s = "".join(random.choice(chars) if random.random() < 0.7 else random.choice(COMMON)
                                for _ in range(n))
                    f.write("第%s条 %s。\n\n" % (NUM[i], "%s，%s" % (s[:8], s[8:]) if comma else s))


if __name__ == "__main__":
    write(sys.argv[1], int(sys.argv[2]))
