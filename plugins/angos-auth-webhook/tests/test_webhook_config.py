"""``[auth.webhook.<name>]`` through the config loader: Angos's keys, and each bad value one
error naming its key and the fix, never echoing a secret."""

from __future__ import annotations

from pathlib import Path

import angos_auth_webhook.plugin
import angos_fs.plugin
import angos_memory.plugin
import pytest
from angos_auth_webhook.config import WebhookConfig

from angos_core.config import parse_config
from angos_core.errors import ConfigError
from angos_core.logs import config_summary
from angos_core.plugins import BackendCatalogue, make_plugin_manager


def parse(tmp_path: Path, table: str):  # type: ignore[no-untyped-def]
    import tomllib

    pm = make_plugin_manager(
        [angos_fs.plugin, angos_memory.plugin, angos_auth_webhook.plugin], load_entrypoints=False
    )
    text = f'[blob_store.fs]\nroot_dir = "{tmp_path}"\n{table}'
    return parse_config(tomllib.loads(text), BackendCatalogue.from_plugin_manager(pm))


def test_angos_keys_select_the_webhook_authorizer(tmp_path: Path) -> None:
    config = parse(
        tmp_path,
        '[auth.webhook.audit]\nurl = "https://authz.example.com/check"\ntimeout_ms = 500\n'
        'cache_ttl = 0\nbearer_token = "tok-123"\n'
        '[auth.webhook.quota]\nurl = "http://quota.internal:8080/check"\n',
    )
    (choice,) = config.selected("authorizer")
    assert choice.name == "webhook" and choice.entries == ("audit", "quota")
    audit, quota = choice.settings["audit"], choice.settings["quota"]
    assert (audit.timeout_ms, audit.cache_ttl) == (500, 0)
    assert (quota.timeout_ms, quota.cache_ttl) == (1000, 60)  # Angos's cache_ttl default
    assert config.selected("authenticator") == ()
    summary = config_summary(config)
    assert "tok-123" not in repr(summary)
    assert "tok-123" not in repr(audit)


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ('url = "ftp://x"', "url", "absolute http(s) URL"),
        ('url = "https://user:hunter2@x/"', "url", "use basic_auth or bearer_token"),
        ('url = "http://x.example/"\nbearer_token = "hunter2"', "url", "must use https"),
        ('url = "https://x/"\ntimeout_ms = 0', "timeout_ms", "must be positive"),
        ('url = "https://x/"\ncache_ttl = -1', "cache_ttl", "cannot be negative"),
        (
            'url = "https://x/"\nbearer_token = "hunter2"\n'
            'basic_auth = {username = "u", password = "hunter2"}',
            "basic_auth",
            "not both",
        ),
        (
            'url = "https://x/"\nforward_headers = ["Authorization"]',
            "forward_headers",
            "verified identity",
        ),
        ("timeout_ms = 10", "url", "required key is missing"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, table: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, f"[auth.webhook.audit]\n{table}\n")
    (error,) = info.value.errors
    assert error.key == f"auth.webhook.audit.{key}"
    assert words in error.message
    assert "hunter2" not in str(info.value)


def test_http_is_fine_without_credentials_or_to_loopback() -> None:
    WebhookConfig(url="http://quota.internal:8080/check")
    WebhookConfig(url="http://127.0.0.1:9/check", bearer_token="t")
