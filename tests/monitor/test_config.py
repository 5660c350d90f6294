"""Unit tests of ServerConfig resolution: explicit > LABSCREEN_* environment > default."""

from __future__ import annotations

import dataclasses

import pytest

from monitor.config import DEFAULT_PORT, ServerConfig


def test_defaults() -> None:
    config = ServerConfig.resolve(environ={})
    assert config.host == "127.0.0.1" and config.port == DEFAULT_PORT and config.token is None
    assert config.store.endswith("labscreen.sqlite") and not config.exposed


def test_environment_then_explicit_precedence() -> None:
    env = {
        "LABSCREEN_PORT": "7000",
        "LABSCREEN_TOKEN": "env-token",
        "LABSCREEN_KIOSK": "1",
        "LABSCREEN_ALLOW_ORIGIN": "a.lab:80, b.lab:80",
    }
    config = ServerConfig.resolve(environ=env)
    assert config.port == 7000 and config.token == "env-token" and config.kiosk
    assert config.allow_origin == ("a.lab:80", "b.lab:80")
    explicit = ServerConfig.resolve(environ=env, port=0, token="flag-token")
    assert explicit.port == 0 and explicit.token == "flag-token"


def test_config_is_frozen() -> None:
    config = ServerConfig.resolve(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "explicit", "needle"),
    [
        ({"LABSCREEN_PORT": "eighty"}, {}, "LABSCREEN_PORT"),
        ({}, {"port": 70000}, "port"),
        ({}, {"stale_after": -1.0}, "stale_after"),
        ({}, {"colour": "blue"}, "colour"),
    ],
)
def test_bad_settings_name_themselves(env: dict[str, str], explicit: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ServerConfig.resolve(environ=env, **explicit)
