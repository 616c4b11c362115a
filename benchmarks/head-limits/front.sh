#!/usr/bin/env bash
# The service behind nginx, one process tree (what the load test measures): `python -m serve` on an inner port,
# nginx (nginx.conf) on $PORT. SIGTERM stops both. Run from the repository root, as the load test runs servers.
set -euo pipefail
here=$(dirname "$0")
tmp=$(mktemp -d)
inner=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -e "s|@PORT@|$PORT|" -e "s|@UPSTREAM@|127.0.0.1:$inner|" -e "s|@TMP@|$tmp|g" "$here/nginx.conf" > "$tmp/nginx.conf"
PORT=$inner "${PYTHON:-python3}" -m serve &
service=$!
until python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$inner/readyz', timeout=1)" 2>/dev/null; do
    kill -0 "$service" || exit 1
    sleep 0.05
done
nginx -c "$tmp/nginx.conf" -e stderr &
front=$!
trap 'kill -TERM "$front" "$service" 2>/dev/null; wait; rm -rf "$tmp"' TERM INT EXIT
wait
