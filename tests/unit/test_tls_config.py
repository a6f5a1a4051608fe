"""``[server.tls]``: parsing, the server context, its errors (one line naming the key and the
fix) and the certificate reload, without a server."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest

from angos_core.config import TlsConfig, load_toml, parse_config
from angos_core.errors import ConfigError
from angos_core.plugins import load_catalogue
from angos_core.testing.tls import TestCA, TlsPki
from angos_core.tls import ReloadingContext, build_context

FS = '[blob_store.fs]\nroot_dir = "data"\n'


def _parse(server_tls: str) -> TlsConfig | None:
    config = parse_config(load_toml(f"[server.tls]\n{server_tls}\n{FS}", "t"), load_catalogue())
    return config.server.tls


def _errors(server_tls: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _parse(server_tls)
    return [str(e) for e in info.value.errors]


def _tls(pki: TlsPki, **changes: object) -> TlsConfig:
    values: dict[str, object] = {
        "server_certificate_bundle": pki.server.cert_path,
        "server_private_key": pki.server.key_path,
        **changes,
    }
    return TlsConfig(**values)  # type: ignore[arg-type]


def _build_error(tls: TlsConfig) -> str:
    with pytest.raises(ConfigError) as info:
        build_context(tls)
    (error,) = info.value.errors
    message = str(error)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- parsing


def test_no_tls_table_serves_plain_http() -> None:
    config = parse_config(load_toml(FS, "t"), load_catalogue())
    assert config.server.tls is None


def test_tls_table_is_parsed_with_angos_keys() -> None:
    tls = _parse(
        'server_certificate_bundle = "/tls/server.pem"\nserver_private_key = "/tls/key.pem"\n'
        'client_ca_bundle = "/tls/ca.pem"\nclient_auth = "required"'
    )
    assert tls == TlsConfig(
        Path("/tls/server.pem"), Path("/tls/key.pem"), Path("/tls/ca.pem"), "required"
    )


def test_tls_defaults_no_client_certificates() -> None:
    tls = _parse('server_certificate_bundle = "c.pem"\nserver_private_key = "k.pem"')
    assert tls is not None
    assert tls.client_ca_bundle is None
    assert tls.client_auth == "optional"


def test_missing_and_unknown_keys_are_each_named() -> None:
    errors = _errors('server_certificate_bundle = "c.pem"\nca_bundle = "x"')
    assert any(
        e.startswith("server.tls.server_private_key: required key is missing") for e in errors
    )
    assert any(e.startswith("server.tls.ca_bundle: unknown key; known keys here:") for e in errors)


def test_required_client_auth_needs_a_client_ca_bundle() -> None:
    (error,) = _errors(
        'server_certificate_bundle = "c.pem"\nserver_private_key = "k.pem"\n'
        'client_auth = "required"'
    )
    assert error.startswith("server.tls.client_auth:")
    assert "set server.tls.client_ca_bundle" in error


def test_client_auth_takes_optional_or_required() -> None:
    (error,) = _errors(
        'server_certificate_bundle = "c.pem"\nserver_private_key = "k.pem"\nclient_auth = "yes"'
    )
    assert error.startswith("server.tls.client_auth: expected 'optional' or 'required'")


# --------------------------------------------------------------------------- the context


def test_context_is_tls12_plus_without_client_verification(tls_pki: TlsPki) -> None:
    context = build_context(_tls(tls_pki))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE  # no client certificate is ever trusted
    assert context.get_ca_certs() == []


@pytest.mark.parametrize(
    ("client_auth", "mode"), [("optional", ssl.CERT_OPTIONAL), ("required", ssl.CERT_REQUIRED)]
)
def test_client_ca_bundle_verifies_client_certificates(
    tls_pki: TlsPki, client_auth: str, mode: ssl.VerifyMode
) -> None:
    context = build_context(
        _tls(tls_pki, client_ca_bundle=tls_pki.ca.cert_path, client_auth=client_auth)
    )
    assert context.verify_mode == mode
    (ca,) = context.get_ca_certs()
    assert (("commonName", "Angos Test CA"),) in ca["subject"]


def test_unreadable_certificate_names_the_key(tls_pki: TlsPki, tmp_path: Path) -> None:
    message = _build_error(_tls(tls_pki, server_certificate_bundle=tmp_path / "none.pem"))
    assert message.startswith("server.tls.server_certificate_bundle: cannot read")
    assert "No such file or directory" in message
    assert "set it to the PEM file of the server's certificate" in message


def test_unreadable_key_names_the_key(tls_pki: TlsPki, tmp_path: Path) -> None:
    message = _build_error(_tls(tls_pki, server_private_key=tmp_path / "none.key"))
    assert message.startswith("server.tls.server_private_key: cannot read")


@pytest.mark.parametrize(
    "content",
    [
        "not a certificate\n",
        "-----BEGIN CERTIFICATE-----\nMIIBroken\n-----END CERTIFICATE-----\n",
    ],
)
def test_malformed_certificate_names_the_key(tls_pki: TlsPki, tmp_path: Path, content: str) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text(content)
    message = _build_error(_tls(tls_pki, server_certificate_bundle=bad))
    assert message.startswith("server.tls.server_certificate_bundle:")
    assert "PEM certificate" in message


def test_malformed_key_names_the_key(tls_pki: TlsPki, tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nMIIBroken\n-----END PRIVATE KEY-----\n")
    message = _build_error(_tls(tls_pki, server_private_key=bad))
    assert message.startswith("server.tls.server_private_key:")
    assert "not a valid PEM private key" in message


def test_a_key_that_is_not_the_certificates_names_both(tls_pki: TlsPki) -> None:
    message = _build_error(_tls(tls_pki, server_private_key=tls_pki.client.key_path))
    assert message.startswith("server.tls.server_private_key:")
    assert "is not the private key of the certificate in server.tls.server_certificate_bundle" in (
        message
    )


def test_an_encrypted_key_is_refused_without_a_prompt(tls_pki: TlsPki, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(tls_pki.server.key_path.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    message = _build_error(_tls(tls_pki, server_private_key=encrypted))
    assert message.startswith("server.tls.server_private_key:")
    assert "is encrypted" in message


def test_malformed_client_ca_bundle_names_the_key(tls_pki: TlsPki, tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("garbage")
    message = _build_error(_tls(tls_pki, client_ca_bundle=bad))
    assert message.startswith("server.tls.client_ca_bundle:")
    assert "the CA certificates that issue client certificates" in message


# --------------------------------------------------------------------------- reload


def _live_pair(tls_pki: TlsPki, tmp_path: Path) -> TlsConfig:
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    tls_pki.server.copy_to(cert, key)
    return TlsConfig(cert, key)


def test_a_changed_certificate_is_loaded_for_new_connections(
    tls_pki: TlsPki, tmp_path: Path
) -> None:
    tls = _live_pair(tls_pki, tmp_path)
    reloading = ReloadingContext(tls)
    first = reloading.current
    assert reloading.check() is False  # nothing changed
    tls_pki.ca.server().copy_to(tls.server_certificate_bundle, tls.server_private_key)
    assert reloading.check() is True
    assert reloading.current is not first
    # The listener's context stays the one it was given: connections move over in its
    # server-name callback.
    assert reloading.context is first
    assert first.sni_callback is not None


def test_a_broken_new_file_keeps_the_old_certificate_and_warns_once(
    tls_pki: TlsPki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tls = _live_pair(tls_pki, tmp_path)
    reloading = ReloadingContext(tls)
    before = reloading.current
    # A new certificate whose key has not been written yet: the pair does not match.
    other = TestCA(tmp_path / "ca2").server()
    tls.server_certificate_bundle.write_bytes(other.cert_path.read_bytes())
    with caplog.at_level(logging.WARNING, logger="angos.tls"):
        assert reloading.check() is False
        assert reloading.check() is False
    assert reloading.current is before
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "still serving the previous certificates" in warnings[0].getMessage()
    assert "server.tls.server_private_key" in warnings[0].getMessage()
    # The key arrives: the pair loads.
    tls.server_private_key.write_bytes(other.key_path.read_bytes())
    assert reloading.check() is True
    assert reloading.current is not before


def test_the_startup_summary_shows_the_tls_files_as_a_table(tls_pki: TlsPki) -> None:
    import json

    from angos_core.logs import config_summary

    text = (
        f'[server.tls]\nserver_certificate_bundle = "{tls_pki.server.cert_path}"\n'
        f'server_private_key = "{tls_pki.server.key_path}"\n{FS}'
    )
    summary = config_summary(parse_config(load_toml(text, "t"), load_catalogue()))
    tls = json.loads(json.dumps(summary, default=str))["server"]["tls"]
    assert tls == {
        "server_certificate_bundle": str(tls_pki.server.cert_path),
        "server_private_key": str(tls_pki.server.key_path),
        "client_ca_bundle": None,
        "client_auth": "optional",
    }
