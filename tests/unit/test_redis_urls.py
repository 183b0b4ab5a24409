"""RECALLS_REDIS_URL: one Redis, or Sentinels and the service they watch; checked at load, never shown."""

from __future__ import annotations

import re

import pytest

from recalls.shared.redis_urls import RedisUrlError, SentinelUrl, check_redis_url, redis_passwords
from recalls.shared.settings import SettingsError, load_settings

SENTINELS = (
    "redis+sentinel://recalls-worker:w%40pw@s1:26391,s2:26392,s3/recalls-main/2"
    "?sentinel_username=watcher&sentinel_password=s-pw"
)


def test_a_sentinel_url_names_the_sentinels_the_service_and_both_logins() -> None:
    parsed = SentinelUrl.parse(SENTINELS)
    assert parsed.sentinels == (("s1", 26391), ("s2", 26392), ("s3", 26379))
    assert (parsed.service, parsed.db) == ("recalls-main", 2)
    assert (parsed.username, parsed.password) == ("recalls-worker", "w@pw")
    assert (parsed.sentinel_username, parsed.sentinel_password) == ("watcher", "s-pw")


def test_every_password_of_a_url_is_known_so_no_text_can_show_it() -> None:
    assert sorted(redis_passwords(SENTINELS)) == ["s-pw", "w@pw"]
    assert sorted(redis_passwords("redis://u:p%2Fw@h:6379/0")) == ["p%2Fw", "p/w"]
    assert redis_passwords("redis://h:6379/0") == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://h:6379/", "must be a redis://, rediss:// or redis+sentinel:// URL"),
        ("redis+sentinel://s1:26379/", "a redis+sentinel:// URL must name the service"),
        ("redis+sentinel://s1:26379/main/zero", "a redis+sentinel:// URL's database must be a number"),
        ("redis+sentinel://s1:port/main", "a Sentinel's port must be a number"),
    ],
)
def test_a_url_that_is_neither_is_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(RedisUrlError, match=re.escape(reason)):
        check_redis_url(url)


def test_the_settings_refuse_it_at_load_naming_the_variable_not_the_password() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(redis_url="redis+sentinel://u:secret-pw@s1:26379/")
    assert "RECALLS_REDIS_URL: a redis+sentinel:// URL must name the service" in str(refused.value)
    assert "secret-pw" not in str(refused.value)
