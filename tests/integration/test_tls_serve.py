"""A real ``angos serve`` over HTTPS with a test CA, driven by curl, skopeo and Python's ssl.

* curl ``--cacert`` gets ``/v2/``; plain HTTP on the TLS port gets no answer;
* skopeo copies an image in and out with ``--tls-verify=true`` and a ``certs.d`` directory;
* ``client_auth = "required"``: no client certificate fails the handshake, the test CA's
  client certificate gets in; a certificate of another CA, or an expired one, is refused at
  the handshake (with ``optional`` too);
* the server certificate replaced on disk is served to the next connection (its serial),
  while a keep-alive connection opened before keeps working;
* ``--workers 2`` serve TLS, each worker with its own context.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from angos_core.testing.tls import Issued, TlsPki, cert_dir, client_context
from tests.e2e.oci_images import build_source, read_layout_ref, run_skopeo
from tests.support.angos_server import AngosServer, AngosServerFactory, fs_config
from tests.support.tools import require_tool, run_tool

pytestmark = pytest.mark.timeout(180)

#: How long a replaced certificate may take to be served: the poll interval plus a margin
#: for a loaded machine.
RELOAD_WAIT_SECS = 20.0


def tls_toml(root: Path, cert: Path, key: Path, extra: str = "") -> str:
    return (
        f'{fs_config(root)}[server.tls]\nserver_certificate_bundle = "{cert}"\n'
        f'server_private_key = "{key}"\n{extra}'
    )


def mtls_toml(root: Path, pki: TlsPki, client_auth: str) -> str:
    return tls_toml(
        root,
        pki.server.cert_path,
        pki.server.key_path,
        f'client_ca_bundle = "{pki.ca.cert_path}"\nclient_auth = "{client_auth}"\n',
    )


@pytest.fixture
def curl() -> str:
    return require_tool("curl", "apt-get install curl")


@pytest.fixture
def skopeo() -> str:
    return require_tool("skopeo", "apt-get install skopeo (or run scripts/test)")


def served_serial(port: int, ca: Path, client: Issued | None = None) -> int:
    """The serial of the certificate a new connection to ``port`` is served."""
    context = client_context(ca, client)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def tls12_handshake_error(port: int, context: ssl.SSLContext) -> str:
    """The error of a TLS 1.2 handshake with ``context`` (which must fail), with the name of
    the alert the server sent: in TLS 1.2 the server's verdict on the client certificate
    is part of the handshake (in TLS 1.3 it arrives after the client's side is done)."""
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            context.wrap_socket(sock, server_hostname="127.0.0.1").close()
        except ssl.SSLError as exc:
            return str(exc).upper().replace(" ", "_")
    raise AssertionError("the TLS 1.2 handshake succeeded")


def handshake_error(port: int, context: ssl.SSLContext) -> str | None:
    """None if a request over a new connection with ``context`` is answered, else the
    error. In TLS 1.3 the server's verdict on the client certificate arrives after the
    client's side of the handshake: a request is what proves the connection usable."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("GET", "/v2/")
        conn.getresponse().read()
    except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    return None


def curl_v2(
    curl: str, server: AngosServer, ca: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return run_tool(
        [curl, "-sS", "--noproxy", "*", "--max-time", "20", "--cacert", str(ca),
         "-o", "/dev/null", "-w", "%{http_code}", *extra, f"https://{server.host}/v2/"],
        shown="curl /v2/",
        check=False,
    )  # fmt: skip


# --------------------------------------------------------------------------- HTTPS


def test_curl_gets_v2_over_https_with_the_ca(
    angos_server_factory: AngosServerFactory, tls_pki: TlsPki, tmp_path: Path, curl: str
) -> None:
    server = angos_server_factory(
        tls_toml(tmp_path / "data", tls_pki.server.cert_path, tls_pki.server.key_path),
        ssl_context=client_context(tls_pki.ca.cert_path),
    )
    ok = curl_v2(curl, server, tls_pki.ca.cert_path)
    assert (ok.returncode, ok.stdout) == (0, "200"), ok.stderr
    # Another CA's clients do not trust it: the chain is the test CA's.
    untrusted = curl_v2(curl, server, tls_pki.other_ca.cert_path)
    assert untrusted.returncode == 60, untrusted  # curl: peer certificate cannot be verified
    # Plain HTTP on the TLS port gets no HTTP answer.
    plain = run_tool(
        [curl, "-sS", "--noproxy", "*", "--max-time", "10", f"http://{server.host}/v2/"],
        shown="curl http:// on the TLS port",
        check=False,
    )
    assert plain.returncode != 0
    assert "serving on https://127.0.0.1:" in server.stderr_text()


def test_skopeo_copies_an_image_in_and_out_with_tls_verification(
    angos_server_factory: AngosServerFactory, tls_pki: TlsPki, tmp_path: Path, skopeo: str
) -> None:
    server = angos_server_factory(
        tls_toml(tmp_path / "data", tls_pki.server.cert_path, tls_pki.server.key_path),
        ssl_context=client_context(tls_pki.ca.cert_path),
    )
    source = build_source(tmp_path / "source")
    certs = cert_dir(tmp_path / "certs.d" / server.host, tls_pki.ca.cert_path)
    remote = f"docker://{server.host}/tls/app:v1"
    run_skopeo(
        skopeo, "copy", "--preserve-digests", "--dest-tls-verify=true",
        f"--dest-cert-dir={certs}", f"oci:{source.oci.root}:single", remote,
    )  # fmt: skip
    back = tmp_path / "back"
    run_skopeo(
        skopeo, "copy", "--preserve-digests", "--src-tls-verify=true",
        f"--src-cert-dir={certs}", remote, f"oci:{back}:single",
    )  # fmt: skip
    assert read_layout_ref(back, "single")["digest"] == source.single.digest
    # Without the CA, verification fails: skopeo really checked the chain.
    refused = run_tool(
        [skopeo, "--insecure-policy", "inspect", "--tls-verify=true", remote],
        shown="skopeo inspect without the CA",
        check=False,
    )
    assert refused.returncode != 0
    assert "certificate" in refused.stderr


# --------------------------------------------------------------------------- client certificates


def test_required_client_auth_refuses_a_client_without_a_certificate(
    angos_server_factory: AngosServerFactory, tls_pki: TlsPki, tmp_path: Path, curl: str
) -> None:
    server = angos_server_factory(
        mtls_toml(tmp_path / "data", tls_pki, "required"),
        ssl_context=client_context(tls_pki.ca.cert_path, tls_pki.client),
    )
    ca = tls_pki.ca.cert_path
    assert handshake_error(server.port, client_context(ca)) is not None
    assert "ALERT_HANDSHAKE_FAILURE" in tls12_handshake_error(server.port, client_context(ca))
    without = curl_v2(curl, server, ca)
    assert without.returncode != 0 and without.stdout in ("", "000"), without
    assert "alert" in without.stderr, without.stderr  # e.g. "tlsv13 alert certificate required"

    assert handshake_error(server.port, client_context(ca, tls_pki.client)) is None
    tls12 = client_context(ca, tls_pki.client)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert handshake_error(server.port, tls12) is None  # TLS 1.2 itself is served
    client = tls_pki.client
    with_cert = curl_v2(
        curl, server, ca, "--cert", str(client.cert_path), "--key", str(client.key_path)
    )
    assert (with_cert.returncode, with_cert.stdout) == (0, "200"), with_cert.stderr


@pytest.mark.parametrize("client_auth", ["optional", "required"])
@pytest.mark.parametrize("which", ["foreign_client", "expired_client"])
def test_a_certificate_that_does_not_verify_is_refused_at_the_handshake(
    angos_server_factory: AngosServerFactory,
    tls_pki: TlsPki,
    tmp_path: Path,
    client_auth: str,
    which: str,
) -> None:
    server = angos_server_factory(
        mtls_toml(tmp_path / "data", tls_pki, client_auth),
        ssl_context=client_context(tls_pki.ca.cert_path, tls_pki.client),
    )
    bad: Issued = getattr(tls_pki, which)
    assert handshake_error(server.port, client_context(tls_pki.ca.cert_path, bad)) is not None
    error = tls12_handshake_error(server.port, client_context(tls_pki.ca.cert_path, bad))
    # The alert names the reason (asyncio alone would close with a bare EOF).
    expected = "ALERT_CERTIFICATE_EXPIRED" if which == "expired_client" else "ALERT_UNKNOWN_CA"
    assert expected in error, error
    if client_auth == "optional":
        # ...while no certificate at all is let in (it may authenticate otherwise).
        assert handshake_error(server.port, client_context(tls_pki.ca.cert_path)) is None


def test_without_client_ca_bundle_a_client_certificate_is_not_asked_for(
    angos_server_factory: AngosServerFactory, tls_pki: TlsPki, tmp_path: Path
) -> None:
    server = angos_server_factory(
        tls_toml(tmp_path / "data", tls_pki.server.cert_path, tls_pki.server.key_path),
        ssl_context=client_context(tls_pki.ca.cert_path),
    )
    # Even a foreign certificate passes the handshake: it is never requested, never read.
    context = client_context(tls_pki.ca.cert_path, tls_pki.foreign_client)
    assert handshake_error(server.port, context) is None


# --------------------------------------------------------------------------- reload


def test_a_replaced_certificate_is_served_to_new_connections_without_dropping_old_ones(
    angos_server_factory: AngosServerFactory, tls_pki: TlsPki, tmp_path: Path
) -> None:
    cert, key = tmp_path / "tls" / "server.pem", tmp_path / "tls" / "server.key"
    cert.parent.mkdir()
    tls_pki.server.copy_to(cert, key)
    ca = tls_pki.ca.cert_path
    server = angos_server_factory(
        tls_toml(tmp_path / "data", cert, key), ssl_context=client_context(ca)
    )
    assert served_serial(server.port, ca) == tls_pki.server.serial

    # A keep-alive connection in flight across the reload.
    kept = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_context(ca))
    kept.request("GET", "/v2/")
    assert kept.getresponse().read() is not None
    assert kept.sock is not None
    kept_sock = kept.sock

    # A broken file first: the old certificate stays, one warning.
    cert.write_text("-----BEGIN CERTIFICATE-----\ntruncated\n")
    renewed = tls_pki.ca.server()
    deadline = time.monotonic() + RELOAD_WAIT_SECS
    while "still serving the previous certificates" not in server.stderr_text():
        assert time.monotonic() < deadline, server.stderr_text()
        time.sleep(0.2)
    assert served_serial(server.port, ca) == tls_pki.server.serial

    renewed.copy_to(cert, key)
    deadline = time.monotonic() + RELOAD_WAIT_SECS
    while (serial := served_serial(server.port, ca)) != renewed.serial:
        assert serial == tls_pki.server.serial
        assert time.monotonic() < deadline, server.stderr_text()
        time.sleep(0.2)
    assert "TLS certificates reloaded" in server.stderr_text()
    assert server.stderr_text().count("still serving the previous certificates") == 1

    # The connection from before the reload is the same socket, still served.
    kept.request("GET", "/v2/")
    response = kept.getresponse()
    assert response.status == 200
    response.read()
    assert kept.sock is kept_sock
    old = kept_sock.getpeercert(binary_form=True)
    assert old is not None
    assert x509.load_der_x509_certificate(old).serial_number == tls_pki.server.serial
    kept.close()


def test_a_replaced_client_ca_bundle_decides_who_gets_in(
    angos_server_factory: AngosServerFactory, tls_pki: TlsPki, tmp_path: Path
) -> None:
    """The CA store verification reads is the new context's: a CA taken out of the bundle
    no longer admits its clients (a context that only ever adds CAs would)."""
    bundle = tmp_path / "client-cas.pem"
    bundle.write_bytes(tls_pki.ca.cert_path.read_bytes())
    toml = tls_toml(
        tmp_path / "data",
        tls_pki.server.cert_path,
        tls_pki.server.key_path,
        f'client_ca_bundle = "{bundle}"\nclient_auth = "required"\n',
    )
    ca = tls_pki.ca.cert_path
    server = angos_server_factory(toml, ssl_context=client_context(ca, tls_pki.client))
    alice = client_context(ca, tls_pki.client)
    mallory = client_context(ca, tls_pki.foreign_client)
    assert handshake_error(server.port, alice) is None
    assert handshake_error(server.port, mallory) is not None

    aside = bundle.with_name("client-cas.pem.new")
    aside.write_bytes(tls_pki.other_ca.cert_path.read_bytes())
    aside.replace(bundle)
    deadline = time.monotonic() + RELOAD_WAIT_SECS
    while handshake_error(server.port, mallory) is not None:
        assert time.monotonic() < deadline, server.stderr_text()
        time.sleep(0.2)
    assert handshake_error(server.port, alice) is not None


# --------------------------------------------------------------------------- workers


def test_workers_each_serve_tls_and_each_reloads(
    angos_server_factory: AngosServerFactory,
    tls_pki: TlsPki,
    tmp_path: Path,
    redis_url: str,
    curl: str,
) -> None:
    cert, key = tmp_path / "tls" / "server.pem", tmp_path / "tls" / "server.key"
    cert.parent.mkdir()
    tls_pki.server.copy_to(cert, key)
    ca, client = tls_pki.ca.cert_path, tls_pki.client
    shared = f'[metadata_store.fs.redis]\nurl = "{redis_url}"\n[cache.redis]\nurl = "{redis_url}"\n'
    toml = shared + tls_toml(
        tmp_path / "data", cert, key, f'client_ca_bundle = "{ca}"\nclient_auth = "required"\n'
    )
    server = angos_server_factory(
        toml, extra_args=["--workers", "2"], ssl_context=client_context(ca, client)
    )
    deadline = time.monotonic() + RELOAD_WAIT_SECS
    while "with 2 workers" not in server.stderr_text():  # once every worker is ready
        assert time.monotonic() < deadline, server.stderr_text()
        time.sleep(0.2)
    assert "serving on https://127.0.0.1:" in server.stderr_text()
    for _ in range(8):  # new connections, spread over both workers by the kernel
        result = curl_v2(
            curl, server, ca, "--cert", str(client.cert_path), "--key", str(client.key_path)
        )
        assert (result.returncode, result.stdout) == (0, "200"), result.stderr
    assert handshake_error(server.port, client_context(ca)) is not None

    renewed = tls_pki.ca.server()
    renewed.copy_to(cert, key)
    deadline = time.monotonic() + RELOAD_WAIT_SECS
    while server.stderr_text().count("TLS certificates reloaded") < 2:  # one per worker
        assert time.monotonic() < deadline, server.stderr_text()
        time.sleep(0.2)
    # Whichever worker the kernel hands a connection to, it serves the new certificate.
    assert {served_serial(server.port, ca, client) for _ in range(12)} == {renewed.serial}


# --------------------------------------------------------------------------- mTLS identity


def test_a_client_certificate_authenticates_a_push_that_anonymous_cannot_make(
    angos_server_factory: AngosServerFactory,
    tls_pki: TlsPki,
    tmp_path: Path,
    curl: str,
    skopeo: str,
) -> None:
    ca, client = tls_pki.ca.cert_path, tls_pki.client
    server = angos_server_factory(
        mtls_toml(tmp_path / "data", tls_pki, "optional"), ssl_context=client_context(ca)
    )
    # Anonymous (TLS, no client certificate): only the challenge of GET /v2/.
    anonymous = curl_v2(curl, server, ca)
    assert (anonymous.returncode, anonymous.stdout) == (0, "401"), anonymous.stderr
    cert_args = ("--cert", str(client.cert_path), "--key", str(client.key_path))
    authenticated = curl_v2(curl, server, ca, *cert_args)
    assert (authenticated.returncode, authenticated.stdout) == (0, "200"), authenticated.stderr

    source = build_source(tmp_path / "source")
    remote = f"docker://{server.host}/team/app:v1"
    no_cert = cert_dir(tmp_path / "anonymous.d", ca)
    refused = run_tool(
        [skopeo, "--insecure-policy", "copy", "--dest-tls-verify=true",
         f"--dest-cert-dir={no_cert}", f"oci:{source.oci.root}:single", remote],
        shown="skopeo copy without a client certificate",
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "authentication required" in refused.stderr or "unauthorized" in refused.stderr.lower()

    with_cert = cert_dir(tmp_path / "alice.d", ca, client)
    run_skopeo(
        skopeo, "copy", "--preserve-digests", "--dest-tls-verify=true",
        f"--dest-cert-dir={with_cert}", f"oci:{source.oci.root}:single", remote,
    )  # fmt: skip
    back = tmp_path / "back"
    run_skopeo(
        skopeo, "copy", "--preserve-digests", "--src-tls-verify=true",
        f"--src-cert-dir={with_cert}", remote, f"oci:{back}:single",
    )  # fmt: skip
    assert read_layout_ref(back, "single")["digest"] == source.single.digest

    # The access log names who pushed: the certificate's common name, through "tls".
    pushes = [
        line
        for line in server.stderr_text().splitlines()
        if '"PUT /v2/team/app/manifests/v1"' in line and " 201 " in line
    ]
    assert pushes, server.stderr_text()
    assert all('identity="alice" provider=tls' in line for line in pushes), pushes
