// Runtime configuration. This committed copy is the local default; the site server (site/server.py) and
// the container entrypoint (docker/site/) serve a generated one from the API_URL environment variable instead.
window.CLASSIFIER_CONFIG = { apiUrl: "http://127.0.0.1:8000" };
