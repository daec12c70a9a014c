#!/usr/bin/env python3
"""Check that every relative link (and #anchor) in the repository's Markdown
resolves to a file (and heading) inside the repository.

Usage: .ci/checklinks.py [REPO_ROOT]   (default: the parent of .ci)
"""
import os, re, subprocess, sys
root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
files = subprocess.run(["git", "-C", root, "ls-files", "*.md"], capture_output=True, text=True).stdout.split()
files += [f for f in subprocess.run(["git", "-C", root, "ls-files", "--others", "--exclude-standard", "*.md"], capture_output=True, text=True).stdout.split()]
def slug(h):
    h = h.strip().lower()
    h = re.sub(r"[^\w\- ]", "", h)   # keeps letters, digits, _, -, space
    return h.replace(" ", "-")
def anchors(path):
    out, seen = set(), {}
    in_code = False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        m = re.match(r"^(#{1,6})\s+(.*)", line)
        if m:
            s = slug(m.group(2))
            n = seen.get(s, 0); seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out
link = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)|<img[^>]*src=\"([^\"]+)\"")
bad = 0; n = 0
for f in files:
    p = os.path.join(root, f)
    text = open(p, encoding="utf-8").read()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for m in link.finditer(text):
        target = m.group(1) or m.group(2) or m.group(3)
        if re.match(r"^[a-z]+:", target):
            continue
        n += 1
        path, _, frag = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(p), path)) if path else p
        if not os.path.exists(dest):
            print(f"{f}: {target}: no such file"); bad += 1; continue
        if not os.path.abspath(dest).startswith(os.path.abspath(root) + os.sep):
            print(f"{f}: {target}: outside the repository"); bad += 1; continue
        if frag and dest.endswith(".md") and frag not in anchors(dest):
            print(f"{f}: {target}: no heading #{frag}"); bad += 1
print(f"{n} relative links checked, {bad} broken")
sys.exit(1 if bad else 0)
