#!/usr/bin/env python3
"""Simple cleaner for the benchmarks (an approximation of the clean stage):
every Markdown file under the given folders -> one paragraph per line,
front matter, headings marks, HTML comments and blank lines dropped,
whitespace runs collapsed.  Usage: clean_legal.py OUT.txt DIR..."""
import os, re, sys

def clean_file(path):
    text = open(path, encoding='utf-8', errors='replace').read()
    if text.startswith('---'):
        end = text.find('\n---', 3)
        if end >= 0:
            text = text[end + 4:]
    if '<!-- INFO END -->' in text:
        text = text.split('<!-- INFO END -->', 1)[1]
    out = []
    for line in text.splitlines():
        line = re.sub(r'<!--.*?-->', '', line)
        line = re.sub(r'^#+\s*', '', line)
        line = re.sub(r'\s+', ' ', line).strip()
        if line:
            out.append(line)
    return out

def main():
    out = open(sys.argv[1], 'w', encoding='utf-8')
    n = 0
    for d in sys.argv[2:]:
        for root, dirs, files in os.walk(d):
            dirs.sort()
            for f in sorted(files):
                if f.endswith('.md'):
                    for line in clean_file(os.path.join(root, f)):
                        out.write(line + '\n')
                        n += 1
    print(n, "units", file=sys.stderr)

if __name__ == "__main__":
    main()
