"""`python -m train.secret_env CMD [ARG...]`: run CMD with secrets from Secret Manager in its environment.

For every variable `NAME_SECRET=projects/P/secrets/S/versions/V`, NAME gets that secret version's value (unless
NAME is set already), then CMD replaces this process. The cloud training job (cloudbuilds/vertex/train-job.yaml)
gets its W&B key this way, so the key is never written into the job's spec, which anyone who can list jobs
reads. Credentials: the machine's service account, from the metadata server every Google Cloud VM has. Only the
standard library: the training image has no Google client library of its own to rely on.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import urllib.request
from collections.abc import Callable, Mapping, Sequence

SUFFIX = "_SECRET"
VERSION_NAME = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")
TOKEN_URL = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
ACCESS_URL = "https://secretmanager.googleapis.com/v1/{name}:access"
TIMEOUT_S = 10  # each request: a job that cannot read its secret should fail in seconds, not hang


class SecretError(RuntimeError):
    pass


def _get_json(request: urllib.request.Request) -> dict:
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return json.loads(response.read())


def access_secret(version_name: str) -> str:
    """The value of one secret version, read with the metadata server's access token."""
    token = _get_json(urllib.request.Request(TOKEN_URL, headers={"Metadata-Flavor": "Google"}))["access_token"]
    request = urllib.request.Request(ACCESS_URL.format(name=version_name), headers={"Authorization": f"Bearer {token}"})
    return base64.b64decode(_get_json(request)["payload"]["data"]).decode()


def secret_environment(environ: Mapping[str, str], access: Callable[[str], str] | None = None) -> dict[str, str]:
    """`environ` plus NAME for each NAME_SECRET that names a secret version (an existing NAME wins)."""
    access = access or access_secret
    env = dict(environ)
    for key, value in environ.items():
        name = key.removesuffix(SUFFIX)
        if key.endswith(SUFFIX) and name and VERSION_NAME.match(value) and not environ.get(name):
            try:
                env[name] = access(value)
            except Exception as exc:  # never echo a partial value: only which secret and why
                raise SecretError(f"cannot read {value} for {name}: {type(exc).__name__}: {exc}") from None
    return env


def main(argv: Sequence[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if not command:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    try:
        env = secret_environment(os.environ)
    except SecretError as exc:
        print(f"secret_env: {exc}", file=sys.stderr)
        return 1
    os.execvpe(command[0], command, env)  # replaces this process: the job sees its real exit status


if __name__ == "__main__":
    raise SystemExit(main())
