#!/usr/bin/env python3
"""The health check of the web service in webapp.py, shipped beside it as
`bin/check`: GET http://127.0.0.1:$SLIPWAY_PORT/health (or the port given as
the first argument) within 2 s. Exit 0 when it answers 200, else exit 1 with
one line on stderr saying what it got."""

import os
import sys
import urllib.error
import urllib.request

port = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SLIPWAY_PORT", "")
if not port.isdigit():
    sys.exit(f"check: SLIPWAY_PORT must be a port number, got {port!r}")
url = f"http://127.0.0.1:{port}/health"
# Never through an http_proxy from the environment: loopback only.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(url, timeout=2) as r:
        r.read()
except urllib.error.HTTPError as e:
    sys.exit(f"check: {url} answered {e.code}")
except OSError as e:
    sys.exit(f"check: {url}: {getattr(e, 'reason', e)}")
