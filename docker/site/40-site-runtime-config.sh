#!/bin/sh
# Runs at container start (the nginx image runs /docker-entrypoint.d/*.sh before nginx): writes the page's runtime
# config (config.js) and the security headers (the CSP names the API origin) from API_URL.
# The same rule and the same headers as site/server.py (tests/site/test_site_server.py checks they agree).
# SITE_RUNTIME_DIR (default /tmp/site-runtime) is where nginx reads them (docker/site/default.conf.template).
set -eu

out="${SITE_RUNTIME_DIR:-/tmp/site-runtime}"
url="${API_URL:-}"

fail() {
    echo "site: $1" >&2
    exit 1
}

[ -n "$url" ] || fail "API_URL is not set: give the classifier API's base URL, e.g. https://classifier-api-xyz.a.run.app"
# strip trailing slashes
while [ "${url%/}" != "$url" ]; do url="${url%/}"; done
case "$url" in
    http://?* | https://?*) ;;
    *) fail "API_URL must start with http:// or https:// and name a host, got '$API_URL'" ;;
esac
case "$url" in
    *[!A-Za-z0-9._~:/-]*) fail "API_URL may contain only letters, digits and . _ ~ : / - (no query), got '$API_URL'" ;;
esac
origin="$(printf '%s' "$url" | cut -d/ -f1-3)"
host="$(printf '%s' "$url" | cut -d/ -f3)"
case "$host" in
    '' | *[!A-Za-z0-9._~:-]*) fail "API_URL has no valid host, got '$API_URL'" ;;
esac

mkdir -p "$out"
printf 'window.CLASSIFIER_CONFIG = {"apiUrl": "%s"};\n' "$url" > "$out/config.js"

csp="default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self' $origin; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'"
cat > "$out/security-headers.conf" <<CONF
add_header Content-Security-Policy "$csp" always;
add_header X-Content-Type-Options "nosniff" always;
add_header Referrer-Policy "no-referrer" always;
add_header X-Frame-Options "DENY" always;
add_header Cross-Origin-Opener-Policy "same-origin" always;
add_header Permissions-Policy "camera=(), microphone=(), geolocation=(), payment=(), usb=()" always;
add_header Strict-Transport-Security "max-age=31536000" always;
CONF

echo "site: API_URL=$url (connect-src $origin)"
