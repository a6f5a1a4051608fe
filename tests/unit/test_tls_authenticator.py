"""The ``tls`` authenticator (mTLS): the authenticator contract, the identity it gives, how
it is registered (core's entry point, as a third-party plugin's) and when it joins the chain
(``[server.tls] client_ca_bundle``)."""

from __future__ import annotations

import textwrap
import tomllib
from collections.abc import AsyncIterator

import pytest

from angos_core.auth.tls import TlsAuthenticator
from angos_core.config import AngosConfig, parse_config
from angos_core.errors import ConfigError
from angos_core.identity import ORDER_MTLS, Certificate, Credentials, Identity
from angos_core.plugins import load_catalogue
from angos_core.testing import AuthenticatorCase, AuthenticatorContract

IP = "192.0.2.20"
ALICE = Certificate(common_names=("alice", "alice.example"), organizations=("Platform", "Ops"))


class TestTlsAuthenticator(AuthenticatorContract):
    @pytest.fixture
    async def authenticator_case(self) -> AsyncIterator[AuthenticatorCase]:
        authenticator = TlsAuthenticator()
        await authenticator.open()
        yield AuthenticatorCase(
            authenticator,
            good=Credentials(IP, certificate=ALICE),
            # Verified, yet naming nobody: of its kind and refused.
            bad=Credentials(IP, certificate=Certificate(organizations=("Platform",))),
            foreign=Credentials(IP, basic=("alice", "correct-horse-battery")),
            identity_id="alice",
        )
        await authenticator.aclose()


async def test_identity_is_the_first_common_name_with_the_whole_subject() -> None:
    identity = await TlsAuthenticator().authenticate(
        Credentials(IP, basic=("bob", "a-password-here"), certificate=ALICE)
    )
    assert identity == Identity(
        id="alice", username="alice", provider="tls", method="mtls", certificate=ALICE
    )
    assert TlsAuthenticator.order == ORDER_MTLS


def _parse(text: str) -> AngosConfig:
    storage = '[blob_store.fs]\nroot_dir = "/tmp/x"\n'
    return parse_config(tomllib.loads(textwrap.dedent(text) + storage), load_catalogue())


def test_registered_through_an_entry_point_like_any_plugin() -> None:
    spec = load_catalogue().get("authenticator", "tls")
    assert spec.distribution == "angos-core"
    assert isinstance(spec.factory(spec.config_type()), TlsAuthenticator)


def test_a_client_ca_bundle_puts_tls_first_in_the_chain() -> None:
    config = _parse(
        """
        [server.tls]
        server_certificate_bundle = "c.pem"
        server_private_key = "k.pem"
        client_ca_bundle = "ca.pem"
        """
    )
    assert config.auth.enabled
    assert [c.name for c in config.auth.authenticators] == ["tls"]
    assert isinstance(config.auth.authenticators[0].build(), TlsAuthenticator)


def test_auth_tls_may_be_written_and_is_not_added_twice() -> None:
    config = _parse(
        """
        [server.tls]
        server_certificate_bundle = "c.pem"
        server_private_key = "k.pem"
        client_ca_bundle = "ca.pem"
        [auth.tls]
        """
    )
    assert [c.name for c in config.auth.authenticators] == ["tls"]


@pytest.mark.parametrize(
    "server_tls",
    ["", '[server.tls]\nserver_certificate_bundle = "c.pem"\nserver_private_key = "k.pem"\n'],
)
def test_without_client_ca_bundle_no_certificate_authenticates(server_tls: str) -> None:
    assert not _parse(server_tls).auth.enabled


def test_auth_tls_without_client_ca_bundle_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        _parse(
            '[server.tls]\nserver_certificate_bundle = "c.pem"\nserver_private_key = "k.pem"\n'
            "[auth.tls]\n"
        )
    (error,) = info.value.errors
    assert error.key == "auth.tls"
    assert "set it to the PEM file of the CAs that issue client certificates" in error.message


def test_auth_tls_takes_no_settings() -> None:
    with pytest.raises(ConfigError) as info:
        _parse(
            '[server.tls]\nserver_certificate_bundle = "c.pem"\nserver_private_key = "k.pem"\n'
            'client_ca_bundle = "ca.pem"\n[auth.tls]\nca = "x"\n'
        )
    assert info.value.key == "auth.tls.ca"
