"""What authentication costs: manifest GET by tag, anonymous against each credential kind.

    bench/auth [--seconds 10] [--connections 64] [--rounds 1] [--markdown FILE] [--json FILE]

Two ``angos serve`` processes run at once on fresh fs stores on 127.0.0.1, their configs
the same but for ``[auth]``: one anonymous, one with an ``[auth.identity.<name>]`` user
(an Argon2id hash from ``angos hash-password``), the token service and an ``[auth.oidc]``
entry trusting a local issuer (:mod:`angos_core.testing.oidc_issuer`). Each row is ``wrk``
GETting one manifest by tag; the authenticated rows send the same ``Authorization`` header
with every request, as a logged-in client does:

- ``anonymous``: no header, to the anonymous server;
- ``basic``: the user's password (the verified-credential cache makes all but the first
  request a lookup, not an Argon2id verification);
- ``bearer``: a token from the registry's token service (``GET /token``, pull scope);
- ``bearer-oidc``: a token the local OIDC issuer signed (RS256).

Each authenticated row is reported as a ratio to the anonymous row of the same round; the
rows alternate their order from round to round. See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import random
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime

from bench import workloads as w
from bench import wrk_rows
from bench.servers import Angos
from bench.wrk_rows import REPO, TAG, Row

USER, SERVICE, AUDIENCE = "bench", "angos", "angos-bench"
LABELS = {
    "anonymous": "anonymous (no [auth])",
    "basic": "Basic, an [auth.identity] user (Argon2id)",
    "bearer": "Bearer, a token from the token service",
    "bearer-oidc": "Bearer, an OIDC token (RS256)",
}
TARGET = 0.8


def hash_password(angos_exe: str, password: str) -> str:
    """The hash ``angos hash-password`` prints for ``password`` (read from stdin)."""
    out = subprocess.run(
        [angos_exe, "hash-password"],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def auth_toml(password_hash: str, secret_key: str, issuer: str) -> str:
    return (
        f"\n[auth.identity.{USER}]\n"
        f'username = "{USER}"\n'
        f'password = "{password_hash}"\n\n'
        "[auth.token_service]\n"
        f'secret_key = "{secret_key}"\n'
        f'service = "{SERVICE}"\n\n'
        "[auth.oidc.bench-ci]\n"
        f'issuer = "{issuer}"\n'
        f'required_audience = "{AUDIENCE}"\n'
    )


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


async def seed(anon: Angos, authed: Angos, basic: str) -> str:
    """Push the manifest to both (untimed); return a pull token from the token service."""
    for reg, headers in ((anon, None), (authed, {"Authorization": basic})):
        async with w.session(4, 120, headers) as s:
            await w.push_image(s, reg.url, REPO, TAG, random.Random(4), 4096, 8192)
    async with w.session(1, 60, {"Authorization": basic}) as s:
        url = f"{authed.url}/token?service={SERVICE}&scope=repository:{REPO}:pull"
        async with s.get(url) as resp:
            await w._expect(resp, 200, what="GET /token")
            body = await resp.json()
    return str(body["token"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = wrk_rows.parser("bench/auth", __doc__)
    p.add_argument("--angos-wrap", default="", help="prefix for the authenticated server's command")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from angos_core.testing.oidc_issuer import OidcIssuer  # needs angos-core[testing]

    args = parse_args(argv)
    issuer = OidcIssuer(algorithms=("RS256",))
    password = secrets.token_urlsafe(18)
    anon = wrk_rows.server(args, "anonymous")
    authed: Angos | None = None

    def start(stack: ExitStack) -> Iterator[Angos]:
        nonlocal authed
        issuer.start()
        stack.callback(issuer.close)
        yield anon
        secret_key = base64.b64encode(secrets.token_bytes(32)).decode()
        authed = wrk_rows.server(
            args,
            "authenticated",
            auth_toml(hash_password(anon.exe(), password), secret_key, issuer.issuer),
            wrap=shlex.split(args.angos_wrap),
        )
        yield authed

    async def rows() -> list[Row]:
        assert authed is not None
        basic = basic_header(USER, password)
        token = await seed(anon, authed, basic)
        # Valid for an hour, longer than any run; the verified-token cache holds one 60 s,
        # so a round longer than that also measures a re-verification, as a real client
        # meets one.
        exp = int(datetime.now(UTC).timestamp()) + 3600
        oidc_token = issuer.token(sub="bench-job", aud=AUDIENCE, exp=exp)
        return [
            Row("anonymous", LABELS["anonymous"], anon),
            Row("basic", LABELS["basic"], authed, {"Authorization": basic}),
            Row("bearer", LABELS["bearer"], authed, {"Authorization": f"Bearer {token}"}),
            Row(
                "bearer-oidc",
                LABELS["bearer-oidc"],
                authed,
                {"Authorization": f"Bearer {oidc_token}"},
            ),
        ]

    return wrk_rows.main(args, start, rows, column="credential", target=TARGET)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())
