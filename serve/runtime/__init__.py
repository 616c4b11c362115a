"""The service's seams with the platform under it, in one place: where it leans on another project's internals,
each pinned and guarded by tests/serve/test_runtime_internals.py, which fails when the internal it relies on changes.

- http_protocol.py: uvicorn's httptools protocol with request-head limits (size, count, time). Subclasses
  `uvicorn.protocols.http.httptools_impl.HttpToolsProtocol`, overriding its parser callbacks and the private
  `_unsupported_upgrade_warning`, and reads its `parser`, `cycle`, `pipeline`, `flow`, `server_state` and
  `STATUS_LINE`: uvicorn and httptools at the pins of requirements-serve.txt. Kept over nginx in front, which
  measured 9 % fewer requests a second at 16 clients and lacks a header-count limit (benchmarks/head-limits/).
- event_loop.py: asyncio's selector loop, calm when file descriptors run out. Overrides CPython's private
  `BaseSelectorEventLoop._accept_connection` and `_start_serving` (their signatures on CPython 3.11, the one
  version pyproject.toml allows). Kept over CPython's own loop, with or without uvicorn's `limit_concurrency`,
  which wrote 6-9 MB of tracebacks in 4 s out of descriptors (benchmarks/accept-loop/).
- spinning.py: `ORT_SPINNING=auto`, onnxruntime's idle threads spinning only while requests come alone: rebuilds the
  onnxruntime session (public API) and calls glibc's `malloc_trim` (public, through ctypes; nothing elsewhere).
"""
