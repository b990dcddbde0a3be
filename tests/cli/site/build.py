#!/usr/bin/env python3
"""The site's build, run by `slipway build TAG` in the exported tree.

Renders pages/*.md through template.html into dist/public/, and writes what
the host needs beside the document root: dist/server.json (the web server's
configuration for this release, read again on every reload) and
dist/bin/health (the health check). The output depends on the sources only,
so the same tag always gives the same bundle id.
"""

import html
import json
import os
import shutil

OUT = "dist"


def render(md):
    """A very small Markdown subset: `#`/`##` headings, `- ` lists, paragraphs."""
    blocks, title = [], None
    for block in md.strip().split("\n\n"):
        lines = block.strip().splitlines()
        if lines[0].startswith("# "):
            title = title or lines[0][2:]
            blocks.append(f"<h1>{html.escape(lines[0][2:])}</h1>")
        elif lines[0].startswith("## "):
            blocks.append(f"<h2>{html.escape(lines[0][3:])}</h2>")
        elif all(line.startswith("- ") for line in lines):
            items = "".join(f"<li>{html.escape(line[2:])}</li>" for line in lines)
            blocks.append(f"<ul>{items}</ul>")
        else:
            blocks.append(f"<p>{html.escape(' '.join(lines))}</p>")
    return title or "untitled", "\n".join(blocks)


def main():
    release = open("VERSION").read().strip()
    template = open("template.html").read()
    pages = sorted(p[:-3] for p in os.listdir("pages") if p.endswith(".md"))
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(f"{OUT}/public")
    nav = " | ".join(f'<a href="/{p}.html">{p}</a>' for p in pages)
    for page in pages:
        title, body = render(open(f"pages/{page}.md").read())
        out = template.replace("{{title}}", html.escape(title))
        out = out.replace("{{release}}", html.escape(release))
        out = out.replace("{{nav}}", nav).replace("{{body}}", body)
        with open(f"{OUT}/public/{page}.html", "w") as f:
            f.write(out)
    shutil.copytree("static", f"{OUT}/public/static")
    with open(f"{OUT}/public/version.txt", "w") as f:
        f.write(release + "\n")
    config = {"headers": {"X-Release": release, "Cache-Control": "no-cache"}}
    with open(f"{OUT}/server.json", "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    os.makedirs(f"{OUT}/bin")
    shutil.copy("bin/health", f"{OUT}/bin/health")


main()
