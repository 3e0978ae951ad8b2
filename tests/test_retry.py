"""retry_async: retries the listed errors under the policy and reports each retry to a hook."""

from __future__ import annotations

import pytest

from harvester.retry import RetryPolicy, no_sleep, retry_async


class Flaky(Exception):
    """A retried error carrying which try raised it."""


async def test_on_retry_sees_every_retried_error_but_not_the_last() -> None:
    tries: list[int] = []
    seen: list[str] = []

    async def call() -> str:
        tries.append(len(tries) + 1)
        raise Flaky(f"try {len(tries)}")

    with pytest.raises(Flaky, match="try 3"):
        await retry_async(
            call,
            policy=RetryPolicy(attempts=3, base_s=0.0),
            retry_on=(Flaky,),
            what="test",
            sleep=no_sleep,
            on_retry=lambda exc: seen.append(str(exc)),
        )
    assert tries == [1, 2, 3]
    assert seen == ["try 1", "try 2"]


async def test_other_errors_are_not_retried_or_reported() -> None:
    seen: list[BaseException] = []

    async def call() -> str:
        raise KeyError("permanent")

    with pytest.raises(KeyError):
        await retry_async(
            call,
            policy=RetryPolicy(attempts=3, base_s=0.0),
            retry_on=(Flaky,),
            what="test",
            sleep=no_sleep,
            on_retry=seen.append,
        )
    assert seen == []
