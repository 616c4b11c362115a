# The website: static files (site/) served by nginx, non-root, listening on $PORT (Cloud Run sets it; 8080 here).
# API_URL (the classifier API's base URL, another origin on Cloud Run) is required at start: an entrypoint hook
# writes config.js and the Content-Security-Policy from it, and refuses to start without a valid one.
#   docker build -f docker/site.Dockerfile -t classifier-site .
#   docker run -p 8080:8080 -e API_URL=http://127.0.0.1:8000 classifier-site
FROM nginxinc/nginx-unprivileged:1.28.0-alpine

ENV PORT=8080 \
    SITE_RUNTIME_DIR=/tmp/site-runtime

COPY docker/site/default.conf.template /etc/nginx/templates/default.conf.template
COPY --chmod=0755 docker/site/40-site-runtime-config.sh /docker-entrypoint.d/40-site-runtime-config.sh
# Owned by root, read-only for the nginx user. Without site/server.py, the local server (.dockerignore).
COPY site/ /usr/share/nginx/html/

USER 101
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --retries=3 \
    CMD ["sh", "-c", "wget -q -O /dev/null http://127.0.0.1:${PORT}/ || exit 1"]
