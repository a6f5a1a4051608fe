"""``[auth]`` parsing: the two forms, unknown authenticators, the failure limit, the
startup summary and the warning of an anonymous registry on the network."""

from __future__ import annotations

import textwrap
import tomllib

import angos_fs.plugin
import angos_memory.plugin
import pytest

from angos_core.auth.config import exposure_warning, is_loopback
from angos_core.config import AngosConfig, parse_config
from angos_core.errors import ConfigError
from angos_core.logs import config_summary
from angos_core.plugins import BackendCatalogue, make_plugin_manager
from tests.support.auth import TEST_AUTH_PLUGIN, StaticAuthenticator

STORAGE = '[blob_store.fs]\nroot_dir = "/tmp/x"\n'


@pytest.fixture(scope="module")
def catalogue() -> BackendCatalogue:
    pm = make_plugin_manager(
        [angos_fs.plugin, angos_memory.plugin, TEST_AUTH_PLUGIN], load_entrypoints=False
    )
    return BackendCatalogue.from_plugin_manager(pm)


def parse(text: str, catalogue: BackendCatalogue) -> AngosConfig:
    return parse_config(tomllib.loads(textwrap.dedent(text) + "\n" + STORAGE), catalogue)


def test_no_auth_section_is_anonymous(catalogue: BackendCatalogue) -> None:
    config = parse("", catalogue)
    assert not config.auth.enabled
    assert config.auth.failure_limit.max_failures == 10
    assert config.auth.failure_limit.window_secs == 60.0


def test_entries_form_builds_one_authenticator_over_every_entry(
    catalogue: BackendCatalogue,
) -> None:
    config = parse(
        """
        [auth.static.alice]
        password = "alice-password"
        [auth.static.bob]
        password = "bob-password"
        """,
        catalogue,
    )
    assert config.auth.enabled
    (choice,) = config.auth.authenticators
    assert choice.name == "static"
    assert choice.entries == ("alice", "bob")
    built = choice.build()
    assert isinstance(built, StaticAuthenticator)
    assert built._users == {"alice": "alice-password", "bob": "bob-password"}


def test_table_form_and_several_authenticators(catalogue: BackendCatalogue) -> None:
    config = parse(
        """
        [auth.static_token]
        token = "t0ken-value"
        [auth.static.alice]
        password = "alice-password"
        [auth.failure_limit]
        max_failures = 3
        window_secs = 5
        """,
        catalogue,
    )
    assert [c.name for c in config.auth.authenticators] == ["static_token", "static"]
    assert config.auth.authenticators[0].settings.token == "t0ken-value"
    assert config.auth.authenticators[0].entries == ()
    assert (config.auth.failure_limit.max_failures, config.auth.failure_limit.window_secs) == (
        3,
        5.0,
    )


def test_describe_for_check_config(catalogue: BackendCatalogue) -> None:
    assert parse("", catalogue).auth.describe() == "no auth (anonymous)"
    config = parse(
        '[auth.static.alice]\npassword = "a-password"\n[auth.static.bob]\npassword = "b-password"\n'
        '[auth.static_token]\ntoken = "t0ken-value"\n',
        catalogue,
    )
    assert config.auth.describe() == "auth static (alice, bob), static_token"


def test_failure_limit_alone_is_no_authentication(catalogue: BackendCatalogue) -> None:
    assert not parse("[auth.failure_limit]\nmax_failures = 3\n", catalogue).auth.enabled


def test_unknown_authenticator_names_what_is_installed(catalogue: BackendCatalogue) -> None:
    with pytest.raises(ConfigError) as info:
        parse('[auth.ldap.corp]\nurl = "ldap://x"\n', catalogue)
    assert info.value.key == "auth.ldap"
    assert info.value.message.startswith(
        "authenticator 'ldap' not found; installed: static, static_token, unreachable; "
    )
    assert "angos-ldap" in info.value.message  # the install hint


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[auth.static.alice]\npasswd = 'x'\n", "auth.static.alice.passwd", "unknown key"),
        ("[auth.static.alice]\n", "auth.static.alice.password", "required key is missing"),
        ("[auth.static]\npassword = 'x'\n", "auth.static.password", "expected a table"),
        ("[auth.static]\n", "auth.static", "no entry configured"),
        ("[auth.static_token]\ntoken = 3\n", "auth.static_token.token", "expected str"),
        ("[auth]\nstatic = 1\n", "auth.static", "expected a table"),
        ("auth = 1\n", "auth", "expected a table"),
        (
            "[auth.failure_limit]\nmax_failures = -1\n",
            "auth.failure_limit.max_failures",
            "negative",
        ),
        ("[auth.failure_limit]\nwindow_secs = 0\n", "auth.failure_limit.window_secs", "positive"),
        ("[auth.failure_limit]\nmax_tracked = 0\n", "auth.failure_limit.max_tracked", "at least 1"),
    ],
)
def test_bad_auth_config_names_the_key(
    catalogue: BackendCatalogue, text: str, key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, catalogue)
    assert info.value.key == key
    assert fragment in info.value.message


def test_every_problem_is_reported(catalogue: BackendCatalogue) -> None:
    with pytest.raises(ConfigError) as info:
        parse("[auth.static.alice]\n[auth.static.bob]\npassword = 1\n[auth.nope]\n", catalogue)
    assert [e.key for e in info.value.errors] == [
        "auth.static.alice.password",
        "auth.static.bob.password",
        "auth.nope",
    ]


def test_startup_summary_names_entries_never_settings(catalogue: BackendCatalogue) -> None:
    config = parse(
        '[auth.static.alice]\npassword = "s3cret-password"\n'
        '[auth.static_token]\ntoken = "t0ken-value-secret"\n',
        catalogue,
    )
    summary = config_summary(config)
    assert summary["auth"]["authenticators"] == {"static": ["alice"], "static_token": []}
    assert "s3cret-password" not in str(summary) and "t0ken-value-secret" not in str(summary)


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.5", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("registry.example.test", False),
    ],
)
def test_loopback(bind: str, loopback: bool) -> None:
    assert is_loopback(bind) is loopback


def test_exposure_warning(catalogue: BackendCatalogue) -> None:
    anonymous = parse("", catalogue).auth
    authenticated = parse('[auth.static.alice]\npassword = "alice-password"\n', catalogue).auth
    assert exposure_warning("127.0.0.1", anonymous) is None
    assert exposure_warning("0.0.0.0", authenticated) is None
    warning = exposure_warning("0.0.0.0", anonymous)
    assert warning is not None and "no authentication" in warning
    assert "[auth." in warning and "bind 127.0.0.1" in warning
