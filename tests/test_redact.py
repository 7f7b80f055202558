"""One redaction rule for everything peers prints (peers/redact.py)."""

from __future__ import annotations

import pytest

from peers.errors import ConfigError
from peers.redact import redact_text, redact_url
from peers.transports import check_scheme, transport_class


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:p%40ss@host:6380/1", "rediss://user:***@host:6380/1"),
        ("redis://user:p@ss@host/0", "redis://user:***@host/0"),  # an unescaped '@'
        ("unix://user:hunter2@/run/redis.sock?db=1", "unix://user:***@/run/redis.sock?db=1"),
        ("redis://[::1]:bad/0", "redis://[::1]:bad/0"),  # unparsable, nothing to hide
        ("redis://user@host/0", "redis://user@host/0"),
        ("sqlite:///home/me/peers.db", "sqlite:///home/me/peers.db"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_hides_every_url_password_in_it() -> None:
    text = 'env PEERS_URL="redis://peers:hunter2@db:6379/0" and rediss://:other@x/1 too'
    hidden = redact_text(text)
    assert "hunter2" not in hidden and "other" not in hidden
    assert '"redis://peers:***@db:6379/0"' in hidden and "rediss://:***@x/1" in hidden


@pytest.mark.parametrize(
    "url", ["redsi://admin:hunter2@10.0.0.1:6379/0", "rediss//admin:hunter2@host", "admin:hunter2@host"]
)
def test_a_mistyped_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_scheme(url)
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        transport_class(url)
    assert "hunter2" not in str(info.value)
