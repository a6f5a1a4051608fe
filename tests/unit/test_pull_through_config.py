"""``[[repository."<ns>".upstream]]``: parsing, errors naming the key, the name mapping, and
the upstream auth helpers."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from angos_core.config import AngosConfig, UpstreamConfig, parse_config
from angos_core.errors import ConfigError
from angos_core.plugins import load_catalogue
from angos_core.registry.pull_through import CachedNamespace
from angos_core.upstream.auth import TokenCache, parse_challenge


def parse(text: str) -> AngosConfig:
    data = tomllib.loads(text)
    data["blob_store"] = {"fs": {"root_dir": "/nonexistent/angos-pull-through"}}
    return parse_config(data, load_catalogue())


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


def test_upstreams_parse_in_order_with_angos_keys(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("tok-123\n")
    config = parse(
        f"""
[repository."docker.io"]
tag_ttl_secs = 60
[[repository."docker.io".upstream]]
url = "https://registry-1.docker.io/"
username = "me"
password = "pw"
[[repository."docker.io".upstream]]
url = "http://mirror.internal:5000"
username = "bot"
password_file = "{secret}"
"""
    )
    repo = config.repositories["docker.io"]
    assert repo.tag_ttl_secs == 60
    assert [u.url for u in repo.upstream] == [
        "https://registry-1.docker.io",
        "http://mirror.internal:5000",
    ]
    assert repo.upstream[1].password == "tok-123"
    assert parse('[repository."team"]\n').repositories["team"].upstream == []


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ('url = "ftp://x"', 'repository."docker.io".upstream[0].url', "http://"),
        (
            'url = "https://u:p@x"',
            'repository."docker.io".upstream[0].url',
            "holds credentials",
        ),
        (
            'url = "https://x"\nusername = "u"',
            'repository."docker.io".upstream[0].password',
            "both",
        ),
        (
            'url = "https://x"\nusername = "u"\npassword = "p"\npassword_file = "/f"',
            'repository."docker.io".upstream[0].password_file',
            "not both",
        ),
        (
            'url = "https://x"\nusername = "u"\npassword_file = "/nonexistent/pw"',
            'repository."docker.io".upstream[0].password_file',
            "cannot read",
        ),
        ('uri = "https://x"', 'repository."docker.io".upstream[0].uri', "unknown key"),
    ],
)
def test_upstream_errors_name_the_key(table: str, key: str, words: str) -> None:
    exc = error_of(f'[[repository."docker.io".upstream]]\n{table}\n')
    messages = [(e.key, e.message) for e in exc.errors]
    assert any(k == key and words in m for k, m in messages), messages


def test_negative_tag_ttl_names_the_key() -> None:
    exc = error_of('[repository."docker.io"]\ntag_ttl_secs = -1\n')
    assert exc.errors[0].key == 'repository."docker.io".tag_ttl_secs'


def test_password_is_in_no_repr() -> None:
    from angos_core.upstream.client import UpstreamClient

    config = UpstreamConfig("https://x", "u", "hunter2")
    client = UpstreamClient(config, session=None)  # type: ignore[arg-type]
    assert "hunter2" not in repr(client) and "hunter2" not in repr(config)


def test_a_pull_maps_below_the_namespace() -> None:
    ns = CachedNamespace("docker.io", (), 300.0)
    assert ns.upstream_path("docker.io/library/alpine") == "library/alpine"


def test_bearer_challenge_is_parsed() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"'
    )
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull",
    }
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None and basic.scheme == "basic"


def test_tokens_are_kept_until_shortly_before_they_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("angos_core.upstream.auth.time.monotonic", lambda: now[0])
    cache = TokenCache()
    cache.put("repository:a:pull", "t1", 60)
    assert cache.get("repository:a:pull") == "t1"
    assert cache.get("repository:b:pull") is None
    now[0] += 49
    assert cache.get("repository:a:pull") == "t1"
    now[0] += 2  # within the margin of its expiry: fetched again
    assert cache.get("repository:a:pull") is None
