"""`python -m serve` with another event loop and uvicorn's `limit_concurrency` (the arms of measure.py).

python benchmarks/accept-loop/serve_with.py LOOP LIMIT_CONCURRENCY     (LOOP: asyncio | calm; LIMIT 0: none)
"""

from __future__ import annotations

import sys

import serve.__main__ as entry
from serve import server

loop, limit = sys.argv[1], int(sys.argv[2])
build = server.build_server


def build_with(app, settings):
    built = build(app, settings)
    if loop == "asyncio":
        built.config.loop = "asyncio"  # CPython's own selector loop, not serve/runtime/event_loop.py's
    built.config.limit_concurrency = limit or None
    return built


entry.build_server = build_with
sys.exit(entry.main())
