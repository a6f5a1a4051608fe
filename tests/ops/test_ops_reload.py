"""SIGHUP to a real ``angos serve``: the config reloaded without a restart (policies,
identities, OIDC providers, read-only mode), a broken one refused with the old kept, and the
requests in flight carried across."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from angos_auth_basic.testing import cheap_argon2

from angos_core.testing.oidc_issuer import OidcIssuer
from tests.support.angos_server import AngosServer, AngosServerFactory, loopback

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
RELOADED = "config reloaded from"
REFUSED = "config reload refused"


# --------------------------------------------------------------------------- helpers


def fs(root: Path, extra: str = "") -> str:
    return f'[blob_store.fs]\nroot_dir = "{root}"\n{extra}'


def sighup(server: AngosServer, toml_text: str | None, line: str, count: int = 1) -> str:
    """Write ``toml_text`` as the server's config (None: leave it), SIGHUP it, and wait for
    ``count`` new log lines holding ``line``; the new part of the log."""
    before = len(server.stderr_text())
    if toml_text is not None:
        server.config_path.write_text(toml_text)
    os.kill(server.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while True:
        new = server.stderr_text()[before:]
        if new.count(line) >= count:
            return new
        assert server.running, server.stderr_text()
        assert time.monotonic() < deadline, f"no {line!r} after SIGHUP:\n{new}"
        time.sleep(0.05)


def request(
    server: AngosServer,
    method: str,
    path: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(
        f"{server.url}{path}", data=data, method=method, headers=headers or {}
    )
    try:
        with loopback.open(req, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(server: AngosServer, name: str, tag: str, layer: bytes) -> str:
    config = b'{"architecture":"amd64","os":"linux"}'
    for blob in (config, layer):
        status, body, _ = request(
            server, "POST", f"/v2/{name}/blobs/uploads/?digest={digest(blob)}", blob
        )
        assert status == 201, body
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    status, body, _ = request(
        server,
        "PUT",
        f"/v2/{name}/manifests/{tag}",
        manifest,
        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert status == 201, body
    return digest(manifest)


def start_upload(server: AngosServer, name: str) -> str:
    status, body, headers = request(server, "POST", f"/v2/{name}/blobs/uploads/")
    assert status == 202, body
    location: str = headers["Location"]
    return location


def partial_put(server: AngosServer, location: str, data: bytes, sent: int) -> socket.socket:
    """A monolithic PUT whose body is only partly sent: the request is in flight."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(
        f"PUT {location}?digest={digest(data)} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data[:sent]
    )
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {buf!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def registry_token(server: AngosServer, headers: dict[str, str]) -> str:
    status, body, _ = request(
        server,
        "GET",
        "/token?service=angos&scope=repository:team/app:pull,push",
        headers=headers,
    )
    assert status == 200, body
    token: str = json.loads(body)["token"]
    return token


def read_only_error(status: int, body: bytes) -> bool:
    if status != 405:
        return False
    error = json.loads(body)["errors"][0]
    return bool(error["code"] == "UNSUPPORTED" and "read-only" in error["message"])


# --------------------------------------------------------------------------- read-only


def test_read_only_by_sighup_refuses_pushes_in_flight_and_leaves_nothing_partial(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    server = angos_server_factory(fs(root))
    manifest = push_image(server, "team/app", "v1", b"first layer")
    # In flight at the switch: a chunked upload between its requests, and a monolithic
    # PUT halfway through its body.
    chunked = start_upload(server, "team/new")
    chunk = os.urandom(64 * 1024)
    status, body, _ = request(server, "PATCH", chunked, chunk)
    assert status == 202, body
    data = os.urandom(1024 * 1024)
    monolithic = start_upload(server, "team/new")
    with partial_put(server, monolithic, data, len(data) // 2) as sock:
        time.sleep(0.3)  # the handler is reading the body
        sighup(server, fs(root, "[maintenance.read_only]\nenabled = true\n"), RELOADED)
        sock.sendall(data[len(data) // 2 :])
        status, body = read_response(sock)
    assert read_only_error(status, body), (status, body)

    # Every write after the switch is refused with the error body.
    assert read_only_error(*request(server, "PUT", f"{chunked}?digest={digest(chunk)}")[:2])
    assert read_only_error(*request(server, "POST", "/v2/team/app/blobs/uploads/")[:2])
    assert read_only_error(*request(server, "DELETE", "/v2/team/app/manifests/v1")[:2])
    # Pulls are served.
    status, _, headers = request(server, "GET", "/v2/team/app/manifests/v1")
    assert status == 200 and headers["Docker-Content-Digest"] == manifest
    status, body, _ = request(server, "GET", f"/v2/team/app/blobs/{digest(b'first layer')}")
    assert (status, body) == (200, b"first layer")
    # Nothing partial is visible: no new repository, tag or link; the monolithic body never
    # became a blob.
    status, body, _ = request(server, "GET", "/v2/_catalog")
    assert json.loads(body)["repositories"] == ["team/app"]
    status, body, _ = request(server, "GET", "/v2/team/app/tags/list")
    assert json.loads(body)["tags"] == ["v1"]
    for blob in (chunk, data):
        assert request(server, "HEAD", f"/v2/team/new/blobs/{digest(blob)}")[0] == 404
    hexd = hashlib.sha256(data).hexdigest()
    assert not (root / "v2/blobs/sha256" / hexd[:2] / hexd / "data").exists()
    assert not (root / "v2/repositories/team/new/_layers").exists()
    assert "read-only" not in server.stderr_text().split(RELOADED)[0]  # switched at runtime


# --------------------------------------------------------------------------- reload


ALLOW_PULL = """
[global.access_policy]
default = "deny"
rules = [
  "request.action in ['get-api-version', 'get-manifest', 'get-blob', 'list-tags', 'metrics']",
]
"""
ALLOW_PUSH = """
[global.access_policy]
default = "deny"
rules = [
  "request.action in ['get-api-version', 'start-upload', 'update-upload', 'complete-upload']",
  "request.action == 'metrics'",
]
"""


def test_a_policy_change_takes_effect_without_a_restart(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    server = angos_server_factory(fs(root, ALLOW_PULL))
    pid = server.pid
    assert request(server, "POST", "/v2/team/app/blobs/uploads/")[0] == 403
    log = sighup(server, fs(root, ALLOW_PUSH), RELOADED)
    assert "global.access_policy" in log
    assert request(server, "POST", "/v2/team/app/blobs/uploads/")[0] == 202
    assert request(server, "GET", "/v2/team/app/tags/list")[0] == 403
    assert server.pid == pid and server.running
    _, body, _ = request(server, "GET", "/metrics")
    assert 'angos_config_reloads_total{result="success"} 1.0' in body.decode()


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        ("[blob_store.fs\n", "is not valid TOML"),
        (
            '[global.access_policy]\ndefault = "deny"\nrules = ["request.action =="]\n',
            "global.access_policy.rules",
        ),
        ("[global]\nbogus = 1\n", "global.bogus: unknown key"),
    ],
    ids=["toml", "cel", "unknown-key"],
)
def test_a_broken_config_on_sighup_keeps_the_old_one(
    angos_server_factory: AngosServerFactory, tmp_path: Path, broken: str, why: str
) -> None:
    root = tmp_path / "data"
    server = angos_server_factory(fs(root, ALLOW_PUSH))
    text = broken if broken.startswith("[blob_store") else fs(root, broken)
    log = sighup(server, text, REFUSED)
    (line,) = [entry for entry in log.splitlines() if REFUSED in entry]
    assert why in line, line
    assert "still serving the previous config" in line
    # The old policy still decides.
    assert request(server, "POST", "/v2/team/app/blobs/uploads/")[0] == 202
    assert request(server, "GET", "/v2/team/app/tags/list")[0] == 403
    _, body, _ = request(server, "GET", "/metrics")
    assert 'angos_config_reloads_total{result="failure"} 1.0' in body.decode()


def test_a_storage_change_is_refused_naming_the_key(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    server = angos_server_factory(fs(root, ALLOW_PULL))
    log = sighup(server, fs(tmp_path / "elsewhere", ALLOW_PUSH), REFUSED)
    (line,) = [entry for entry in log.splitlines() if REFUSED in entry]
    assert "blob_store.fs.root_dir changed" in line and "restart" in line, line
    # Neither the storage nor the policy of that file was applied.
    assert request(server, "POST", "/v2/team/app/blobs/uploads/")[0] == 403
    assert not (tmp_path / "elsewhere").exists()


def test_a_request_in_flight_completes_across_the_reload(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    server = angos_server_factory(fs(root))
    data = os.urandom(2 * 1024 * 1024)
    location = start_upload(server, "team/app")
    with partial_put(server, location, data, len(data) // 4) as sock:
        time.sleep(0.3)
        sighup(server, fs(root, "[global]\nimmutable_tags = true\n"), RELOADED)
        sock.sendall(data[len(data) // 4 :])
        status, body = read_response(sock)
    assert status == 201, body
    assert request(server, "GET", f"/v2/team/app/blobs/{digest(data)}")[1] == data


# --------------------------------------------------------------------------- identities


def identities(root: Path, *users: str) -> str:
    tables = "".join(
        f'[auth.identity.{user}]\nusername = "{user}"\npassword = "{cheap_argon2(user + "-pw")}"\n'
        for user in users
    )
    return fs(root, f'{tables}[auth.token_service]\nsecret_key = "{SECRET}"\n')


def test_a_removed_user_gets_401_with_its_password_and_its_token(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    server = angos_server_factory(identities(root, "alice", "bob"))
    tokens = {user: registry_token(server, basic(user, f"{user}-pw")) for user in ("alice", "bob")}
    for user, token in tokens.items():
        assert request(server, "GET", "/v2/", headers=bearer(token))[0] == 200
        assert request(server, "GET", "/v2/", headers=basic(user, f"{user}-pw"))[0] == 200

    log = sighup(server, identities(root, "alice"), RELOADED)
    assert "auth.identity.bob" in log

    assert request(server, "GET", "/v2/", headers=basic("bob", "bob-pw"))[0] == 401
    status, body, _ = request(server, "GET", "/v2/", headers=bearer(tokens["bob"]))
    assert status == 401 and b"no longer configured" in body, body
    assert request(server, "GET", "/v2/", headers=bearer(tokens["alice"]))[0] == 200
    assert request(server, "GET", "/v2/", headers=basic("alice", "alice-pw"))[0] == 200


def oidc(root: Path, issuer: OidcIssuer, *entries: str) -> str:
    tables = "".join(
        f'[auth.oidc.{entry}]\nissuer = "{issuer.issuer}"\nrequired_audience = "{entry}"\n'
        'allowed_algorithms = ["RS256", "ES256"]\n'
        for entry in entries
    )
    return fs(root, f'{tables}[auth.token_service]\nsecret_key = "{SECRET}"\n')


def test_a_removed_oidc_provider_revokes_the_tokens_minted_for_it(
    angos_server_factory: AngosServerFactory, tmp_path: Path, oidc_issuer: OidcIssuer
) -> None:
    root = tmp_path / "data"
    server = angos_server_factory(oidc(root, oidc_issuer, "github", "gitlab"))
    minted = {
        entry: registry_token(server, bearer(oidc_issuer.token(sub=f"ci-{entry}", aud=entry)))
        for entry in ("github", "gitlab")
    }
    for token in minted.values():
        assert request(server, "GET", "/v2/", headers=bearer(token))[0] == 200

    sighup(server, oidc(root, oidc_issuer, "gitlab"), RELOADED)

    status, body, _ = request(server, "GET", "/v2/", headers=bearer(minted["github"]))
    assert status == 401 and b"no longer configured" in body, body
    assert request(server, "GET", "/v2/", headers=bearer(minted["gitlab"]))[0] == 200


# --------------------------------------------------------------------------- workers


def test_sighup_to_the_master_reloads_every_worker(
    angos_server_factory: AngosServerFactory, tmp_path: Path, redis_url: str
) -> None:
    root = tmp_path / "data"
    shared = f'[metadata_store.fs.redis]\nurl = "{redis_url}"\n[cache.redis]\nurl = "{redis_url}"\n'
    server = angos_server_factory(fs(root, shared + ALLOW_PULL), extra_args=["--workers", "2"])
    started = time.monotonic()
    deadline = time.monotonic() + 20
    while "with 2 workers" not in server.stderr_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    log = sighup(server, fs(root, shared + ALLOW_PUSH), RELOADED, count=2)
    assert "each of 2 worker(s) reloads the config" in log
    # New connections land on either worker: every one sees the new policy.
    for _ in range(20):
        assert request(server, "POST", "/v2/team/app/blobs/uploads/")[0] == 202

    # A worker that replaces a dead one catches up with the reload.
    time.sleep(max(0.0, started + 5.5 - time.monotonic()))  # past the start-up window
    victim = min(
        int(p) for p in Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    )
    before = server.stderr_text().count(RELOADED)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while server.stderr_text().count(RELOADED) == before:
        assert time.monotonic() < deadline, server.stderr_text()
        time.sleep(0.05)
    for _ in range(20):
        assert request(server, "POST", "/v2/team/app/blobs/uploads/")[0] == 202
    assert server.stop() == 0
