#!/usr/bin/env python3
"""Generate a deterministic release-like tree for slipway's benchmarks.

    scripts/gen-tree.py DIR [--seed N] [--files N] [--mib N]
                            [--large N] [--large-mib N]

The same arguments give the same tree, byte for byte, on any machine with
Python >= 3.9 (random.Random is a seeded Mersenne Twister; randbytes and
choices are stable). Nothing it generates is committed: the benchmark scripts
call it with a temporary directory.

Shape: `--files` files in all, of which `--large` are large (together
`--large-mib` MiB, alternating incompressible data and text); the rest are
small files, about 3/4 of them text (html/js/css/json-like word soup that
zstd compresses ~3x) and 1/4 incompressible (images, fonts, archives; more
likely among the bigger files), with log-normal sizes scaled so that the
whole tree is about `--mib` MiB. With the defaults: 20,000 files, half the
bytes text and half incompressible, median 6.7 KiB, largest 1.3 MiB. They
are spread over ~1 directory per 100 files, two levels deep; 1 in 50 small
files is executable, and a few symlinks point inside the tree.
"""

import argparse
import math
import os
import random
import sys

WORDS = (
    "the of and to in is for on that by this with you it not or be are from at as "
    "your all have new more an was we will home can us about if page my has search "
    "free but our one other do no information time they site he up may what which "
    "their news out use any there see only so his when contact here business who "
    "web also now help get view online first am been would how were me services "
    "some these click its like service than find price date back top people had "
    "list name just over state year day into email two health world next used go "
    "work last most products music buy data make them should product system post "
    "div span class href src function return const let var import export default "
    "async await null true false undefined window document style width height "
    "margin padding color border display flex grid none block inline auto px em"
).split()

CHUNK = 4 << 20


def text_bytes(rng, n):
    """About n bytes of word soup in lines (compresses ~3x with zstd -3)."""
    out = []
    size = 0
    while size < n:
        words = rng.choices(WORDS, k=12)
        line = (" ".join(words) + "\n").encode()
        out.append(line)
        size += len(line)
    return b"".join(out)[:n]


def text_block(rng, n):
    # Word soup is slow to make in Python; for big text, repeat a 1 MiB block
    # with a varying prefix per copy so runs are not trivially identical.
    block = text_bytes(rng, 1 << 20)
    out = bytearray()
    i = 0
    while len(out) < n:
        out += b"%08d " % i
        out += block[rng.randrange(0, 4096):]
        i += 1
    return bytes(out[:n])


def write_file(path, rng, size, kind):
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(CHUNK, left)
            if kind == "bin":
                f.write(rng.randbytes(n))
            elif n >= (1 << 20):
                f.write(text_block(rng, n))
            else:
                f.write(text_bytes(rng, n))
            left -= n


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--files", type=int, default=20000)
    p.add_argument("--mib", type=float, default=300)
    p.add_argument("--large", type=int, default=0)
    p.add_argument("--large-mib", type=float, default=0)
    a = p.parse_args()

    rng = random.Random(a.seed)
    root = a.dir
    os.makedirs(root, exist_ok=True)
    if os.listdir(root):
        sys.exit(f"gen-tree: `{root}` is not empty")

    small = max(a.files - a.large, 0)
    small_bytes = max(a.mib - a.large_mib, 0) * (1 << 20)
    # Log-normal sizes (median ~4 KiB, long tail), scaled to the target total.
    raw = [math.exp(rng.gauss(8.3, 1.3)) for _ in range(small)]
    scale = small_bytes / sum(raw) if raw else 0
    sizes = [max(1, int(r * scale)) for r in raw]
    # Bigger small files are more often incompressible (images, fonts).
    kinds = []
    for s in sizes:
        p_bin = 0.15 if s < 16384 else 0.6
        kinds.append("bin" if rng.random() < p_bin else "text")

    ndirs = max(1, small // 100)
    top = max(1, int(math.sqrt(ndirs)))
    dirs = [f"d{i % top:03d}/s{i:04d}" for i in range(ndirs)]
    for d in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)

    exts = {"text": ["html", "js", "css", "json", "txt"], "bin": ["png", "woff2", "gz", "jpg"]}
    total = 0
    for i, (size, kind) in enumerate(zip(sizes, kinds)):
        d = dirs[i % ndirs]
        name = f"f{i:06d}.{rng.choice(exts[kind])}"
        path = os.path.join(root, d, name)
        write_file(path, rng, size, kind)
        if i % 50 == 7:
            os.chmod(path, 0o755)
        total += size

    if a.large:
        os.makedirs(os.path.join(root, "large"), exist_ok=True)
        each = int(a.large_mib * (1 << 20) / a.large)
        for i in range(a.large):
            kind = "bin" if i % 2 == 0 else "text"
            write_file(os.path.join(root, "large", f"blob{i:02d}.{kind}"), rng, each, kind)
            total += each

    # A few symlinks inside the tree, as real sites have.
    os.symlink("d000", os.path.join(root, "latest"))
    first = sorted(os.listdir(os.path.join(root, dirs[0])))[0]
    os.symlink(first, os.path.join(root, dirs[0], "index-link"))

    print(f"gen-tree: {a.files} files, {total} bytes ({total / (1 << 20):.1f} MiB) in {root}", file=sys.stderr)


if __name__ == "__main__":
    main()
