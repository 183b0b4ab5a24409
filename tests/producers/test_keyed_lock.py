"""KeyedLock: one holder per key, unrelated keys concurrently."""

from __future__ import annotations

import asyncio
import contextlib

from recalls.producers.keyed_lock import KeyedLock


async def test_holders_of_one_key_take_turns_while_other_keys_proceed() -> None:
    lock = KeyedLock()
    inside = {"a": 0, "b": 0}
    most_inside = {"a": 0, "b": 0}
    keys_overlapped = False

    async def hold(key: str) -> None:
        nonlocal keys_overlapped
        async with lock.hold(key):
            inside[key] += 1
            most_inside[key] = max(most_inside[key], inside[key])
            keys_overlapped |= inside["a"] > 0 and inside["b"] > 0
            await asyncio.sleep(0.01)
            inside[key] -= 1

    await asyncio.gather(*(hold(key) for key in "ababab"))
    assert most_inside == {"a": 1, "b": 1}
    assert keys_overlapped


async def test_a_failing_holder_releases_the_key() -> None:
    lock = KeyedLock()
    with contextlib.suppress(RuntimeError):
        async with lock.hold("a"):
            raise RuntimeError("boom")
    async with asyncio.timeout(1), lock.hold("a"):
        pass
