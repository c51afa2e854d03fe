#!/usr/bin/env python3
"""gen_corpus.py — distinct legal-style text for the scale benchmark and test.

    gen_corpus.py files OUT N [--labels K] [--seed S]
        N one-article files OUT/label_k/doc_i.md (K label folders, default 8)
    gen_corpus.py bytes OUT FACTOR REF [--seed S]
        FACTOR times the files in the folders of the reference folder REF
        (same relative layout and file sizes; files directly in REF are
        left out), every article different

Text: Markdown files with a title line, an INFO END header and articles
"第N条 ..." made of words drawn (seeded) from a fixed vocabulary of legal
words plus a serial number spelt in Han digits, so that no two articles of
the generated corpus are equal (clean's dedup then keeps them all, and the
cost measured is the cost of distinct text).
"""
import os
import random
import sys

WORDS = ("国家 人民 法院 检察院 行政 机关 公民 法人 组织 合同 当事人 权利 义务 责任 "
         "依法 规定 办法 条例 执行 决定 处罚 罚款 赔偿 损失 财产 管理 监督 检查 审批 "
         "许可 登记 申请 公告 程序 期限 证据 诉讼 仲裁 调解 劳动 社会 保险 税收 资源 "
         "环境 保护 安全 生产 经营 企业 单位 个人 部门 地方 政府 主管 职责 违反 情节 "
         "严重 构成 犯罪 追究 刑事 民事 有关 以上 以下 应当 可以 不得 或者 并且 其他 "
         "具体 措施 制定 实施 标准 技术 信息 公开 数据 网络 服务 市场 价格 竞争 金融 "
         "证券 银行 土地 房屋 建设 工程 交通 运输 卫生 教育 科学 文化 农业 水利").split()
PUNCT = ["，", "，", "，", "；", "、"]
DIGITS = "〇一二三四五六七八九"


def han_number(n):
    return "".join(DIGITS[int(c)] for c in str(n))


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.serial = 0

    def article(self, k, target):
        """Article k of a file, about target bytes, unique by its serial."""
        self.serial += 1
        out = ["第%s条 编号%s" % (han_number(k), han_number(self.serial))]
        size = len(out[0].encode())
        while size < target:
            w = self.r.choice(WORDS)
            p = self.r.choice(PUNCT) if self.r.random() < 0.2 else ""
            out.append(w + p)
            size += len(w.encode()) + len(p.encode())
        return "".join(out) + "。\n\n"

    def document(self, title, size):
        head = "# %s\n\n2020年1月1日 发布\n\n<!-- INFO END -->\n\n" % title
        parts = [head]
        n = len(head.encode())
        k = 1
        while n < size:
            a = self.article(k, min(400, max(60, size - n)))
            parts.append(a)
            n += len(a.encode())
            k += 1
        return "".join(parts)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    a = sys.argv[1:]
    seed = 1
    labels = 8
    if "--seed" in a:
        i = a.index("--seed"); seed = int(a[i + 1]); del a[i:i + 2]
    if "--labels" in a:
        i = a.index("--labels"); labels = int(a[i + 1]); del a[i:i + 2]
    if len(a) < 3 or a[0] not in ("files", "bytes"):
        sys.exit(__doc__)
    g = Gen(seed)
    out = a[1]
    if a[0] == "files":
        n = int(a[2])
        for i in range(n):
            text = "# 规定%d\n\n<!-- INFO END -->\n\n" % i + g.article(1, 200)
            write(os.path.join(out, "label_%d" % (i % labels), "doc_%07d.md" % i), text)
        return
    factor, ref = int(a[2]), a[3]
    files = []
    for root, dirs, names in os.walk(ref):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for nm in sorted(names):
            if nm.startswith("."):
                continue
            p = os.path.join(root, nm)
            if root != ref:     # top-level files (README, term lists) are not documents
                files.append((os.path.relpath(p, ref), os.path.getsize(p)))
    for copy in range(factor):
        for rel, size in files:
            top, _, rest = rel.partition(os.sep)
            # copies stay inside the same label folder (the first one), with a
            # distinct file name so that every copy is its own group
            name = os.path.join(top, "c%03d_%s" % (copy, rest)) if rest else "c%03d_%s" % (copy, top)
            stem = os.path.splitext(os.path.basename(name))[0]
            write(os.path.join(out, name), g.document(stem, size))


if __name__ == "__main__":
    main()
