"""``[auth.oidc.<entry>]`` through core's config loader: registration, defaults, and config
errors as one line naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from angos_auth_oidc import OidcAuthenticator, OidcConfig
from angos_auth_oidc.config import GITHUB_ISSUER, GITHUB_JWKS_URI

from angos_core.config import load_toml, parse_config
from angos_core.errors import ConfigError
from angos_core.plugins import install_hint, load_catalogue

BASE = '[blob_store.fs]\nroot_dir = "/tmp/angos-oidc-config-test"\n'


def parse(auth: str) -> OidcAuthenticator:
    config = parse_config(load_toml(BASE + auth, "<test>"), load_catalogue())
    (choice,) = config.auth.authenticators
    authenticator = choice.build()
    assert isinstance(authenticator, OidcAuthenticator)
    return authenticator


def error_of(auth: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(auth)
    assert "\n" not in str(info.value)
    return info.value


def test_registered_through_the_entry_point() -> None:
    spec = load_catalogue().get("authenticator", "oidc")
    assert spec.distribution == "angos-auth-oidc"
    assert spec.config_type is OidcConfig
    assert getattr(spec, "form", None) == "entries"
    assert "pip install -e plugins/angos-auth-oidc" in install_hint("authenticator", "oidc")


def test_entries_and_defaults() -> None:
    authenticator = parse(
        '[auth.oidc.cluster]\nissuer = "https://kubernetes.default.svc"\n'
        'required_audience = ["angos", "registry"]\n'
        '[auth.oidc.gha]\nprovider = "github"\nrequired_audience = "https://github.com/org"\n'
    )
    cluster, gha = authenticator.entries
    assert (cluster.name, gha.name) == ("oidc.cluster", "oidc.gha")
    assert cluster.config.audiences == ["angos", "registry"]
    assert cluster.config.allowed_algorithms == ["RS256"]
    assert cluster.config.jwks_uri == ""  # discovery
    assert (cluster.config.clock_skew_tolerance, cluster.config.jwks_refresh_interval) == (60, 3600)
    # provider = "github", as in Rust Angos: GitHub's issuer and JWKS, its two claims required.
    assert (gha.config.issuer, gha.config.jwks_uri) == (GITHUB_ISSUER, GITHUB_JWKS_URI)
    assert gha.config.required_claims == ["repository", "actor"]


@pytest.mark.parametrize(
    ("auth", "key", "fix"),
    [
        ('issuer = "token.actions.githubusercontent.com"', "issuer", "absolute https URL"),
        ('issuer = "http://issuer.example.com"', "issuer", "must use https"),
        ('issuer = "https://i.example.com"\njwks_uri = "ftp://x"', "jwks_uri", "https URL"),
        (
            'issuer = "https://i.example.com"\nallowed_algorithms = ["none"]',
            "allowed_algorithms",
            "unsigned tokens",
        ),
        (
            'issuer = "https://i.example.com"\nallowed_algorithms = ["HS256"]',
            "allowed_algorithms",
            "shared-secret HMAC",
        ),
        (
            'issuer = "https://i.example.com"\nallowed_algorithms = ["RS255"]',
            "allowed_algorithms",
            "use asymmetric ones: RS256",
        ),
        (
            'issuer = "https://i.example.com"\nallowed_algorithms = []',
            "allowed_algorithms",
            '["RS256"]',
        ),
        (
            'issuer = "https://i.example.com"\nrequired_audience = []',
            "required_audience",
            "remove the key",
        ),
        (
            'issuer = "https://i.example.com"\njwks_refresh_interval = 0',
            "jwks_refresh_interval",
            "positive",
        ),
        (
            'issuer = "https://i.example.com"\nca_bundle = "/no/such.pem"',
            "ca_bundle",
            "PEM CA bundle",
        ),
        ('required_audience = "x"', "issuer", "issuer is required"),
        (
            'issuer = "https://i.example.com"\nrequired_claims = "repository"',
            "required_claims",
            "expected a list",
        ),
    ],
)
def test_config_errors_name_the_key_and_the_fix(auth: str, key: str, fix: str) -> None:
    error = error_of(f"[auth.oidc.ci]\n{auth}\n")
    assert str(error).startswith("auth.oidc.ci")
    assert key in str(error)
    assert fix in str(error)


def test_an_unknown_key_lists_the_known_ones() -> None:
    error = error_of('[auth.oidc.ci]\nissuer = "https://i.example.com"\naudience = "x"\n')
    assert error.key == "auth.oidc.ci.audience"
    assert "required_audience" in error.message


def test_an_unreadable_ca_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")
    error = error_of(f'[auth.oidc.ci]\nissuer = "https://i.example.com"\nca_bundle = "{bundle}"\n')
    assert "is not a PEM CA bundle" in str(error)


def test_finding_the_plugin_imports_no_jwt_library() -> None:
    """Every process with the plugin installed loads its entry point; only a config with
    ``[auth.oidc]`` pays for PyJWT and cryptography."""
    import subprocess
    import sys

    # This plugin's entry point alone: other installed plugins may import what they like.
    code = (
        "import sys, angos_auth_oidc.plugin as plugin; "
        "(spec,) = plugin.angos_authenticators(); "
        "print(sorted(m for m in ('jwt', 'cryptography', 'aiohttp', 'angos_auth_oidc.jwks') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
