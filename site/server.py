"""Serve the static site (this folder) for local runs and tests: stdlib only, with the same security headers as
the container (docker/site/), and `config.js` generated from API_URL instead of read from disk.

    python site/server.py [--host 127.0.0.1] [--port 8080] [--api-url http://127.0.0.1:8000]

Environment: SITE_HOST, SITE_PORT, API_URL (flags win). Not for production: the container serves the same files
with nginx. A script run by its path, never imported as `site.server`: site/ is not a Python package (an
`__init__.py` here would shadow the standard library's `site` module). This file is not part of the site: the
server refuses to serve it and .dockerignore keeps it out of the site image.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent
DEFAULT_API_URL = "http://127.0.0.1:8000"

# The same rule as docker/site/40-site-runtime-config.sh: http(s), a host, an optional port and path, no query,
# no characters that would need escaping in JavaScript, a CSP header or an nginx config.
_API_URL = re.compile(r"^(?P<origin>https?://[A-Za-z0-9._~:-]+)(?P<path>/[A-Za-z0-9._~:/-]*)?$")


def normalize_api_url(api_url: str) -> str:
    """The API base URL without trailing slashes; ValueError if it is not a plain http(s) URL."""
    url = api_url.strip().rstrip("/")
    if not _API_URL.fullmatch(url):
        raise ValueError(
            f"API_URL must be a plain http(s) URL such as http://127.0.0.1:8000 or https://api.example.com "
            f"(letters, digits and . _ ~ : / - only), got {api_url!r}"
        )
    return url


def api_origin(api_url: str) -> str:
    """scheme://host[:port] of the API, for the CSP connect-src."""
    match = _API_URL.fullmatch(normalize_api_url(api_url))
    assert match is not None
    return match["origin"]


def config_js(api_url: str) -> str:
    """The runtime config the page reads (site/app.js)."""
    config = {"apiUrl": normalize_api_url(api_url)}
    return f"window.CLASSIFIER_CONFIG = {json.dumps(config)};\n"


def content_security_policy(api_url: str) -> str:
    """Only what the page needs: its own scripts and styles, blob:/data: images for the preview, the API."""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' blob: data:",
            f"connect-src 'self' {api_origin(api_url)}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ]
    )


def security_headers(api_url: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(api_url),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    }


def is_file_name(path: str) -> bool:
    """Whether the operating system can take `path` as a file name at all."""
    try:
        return b"\0" not in os.fsencode(path)
    except UnicodeEncodeError:
        return False


def is_site_file(path: Path, root: Path) -> bool:
    """Whether `path` is one of the page's files: not this server's source, nor what Python or a tool leaves beside it
    (`__pycache__/`, hidden files), which the site image does not have either (.dockerignore)."""
    try:
        parts = path.resolve().relative_to(root.resolve()).parts
    except ValueError:
        return False
    return path.suffix not in (".py", ".pyc") and not any(part.startswith(("__", ".")) for part in parts)


class SiteHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    extensions_map = {  # noqa: RUF012 (the base class declares it as a plain dict)
        "": "application/octet-stream",
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
        ".png": "image/png",
        ".jpg": "image/jpeg",
        ".ico": "image/x-icon",
        ".md": "text/plain; charset=utf-8",
        ".txt": "text/plain; charset=utf-8",
    }

    def __init__(self, *args, api_url: str, quiet: bool, **kwargs):
        self.api_url = api_url
        self.quiet = quiet
        super().__init__(*args, **kwargs)

    def version_string(self) -> str:
        return "site"

    def end_headers(self) -> None:
        for name, value in security_headers(self.api_url).items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def _send_config(self, head_only: bool) -> None:
        body = config_js(self.api_url).encode()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/javascript; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/config.js":
            self._send_config(head_only=False)
        else:
            super().do_GET()

    def do_HEAD(self) -> None:
        if self.path.split("?", 1)[0] == "/config.js":
            self._send_config(head_only=True)
        else:
            super().do_HEAD()

    def send_head(self):
        path = self.translate_path(self.path)
        if not is_file_name(path):
            # `%00` (or a lone surrogate) in the URL: open() would raise ValueError, and the base class would drop
            # the connection without an answer. nginx answers 400 too.
            self.send_error(HTTPStatus.BAD_REQUEST, "invalid path")
            return None
        if not is_site_file(Path(path), Path(self.directory)):
            self.send_error(HTTPStatus.NOT_FOUND)
            return None
        return super().send_head()

    def list_directory(self, path):  # no directory listings
        self.send_error(HTTPStatus.NOT_FOUND)
        return None

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def make_server(host: str, port: int, api_url: str, root: Path = SITE_DIR, quiet: bool = False):
    api_url = normalize_api_url(api_url)
    handler = partial(SiteHandler, directory=str(root), api_url=api_url, quiet=quiet)
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("SITE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SITE_PORT", "8080")))
    parser.add_argument("--api-url", default=os.environ.get("API_URL") or DEFAULT_API_URL)
    parser.add_argument("--root", type=Path, default=SITE_DIR, help="the folder to serve (default: site/)")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    try:
        server = make_server(args.host, args.port, args.api_url, args.root, args.quiet)
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"site: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    def stop(signum, frame):
        # Ctrl-C under run_local.py brings SIGINT and then SIGTERM: stop once, ignore the second.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    host, port = server.server_address[:2]
    print(f"site: http://{host}:{port}/ (API {normalize_api_url(args.api_url)})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
