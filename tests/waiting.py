"""Every wait of the tests, through tenacity (the project's one retry library): probe until a condition
holds, or fail naming what never happened."""

from __future__ import annotations

from typing import Callable, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed

T = TypeVar("T")


def eventually(probe: Callable[[], T], *, until: Callable[[T], object] = bool, timeout: float, every: float = 0.1,
               retry_on: tuple[type[BaseException], ...] = (), what: str | Callable[[T | None], str] = "the condition",
               last_on_timeout: bool = False) -> T:
    """`probe()` again every `every` seconds until `until(value)` holds, and return that value. An
    exception of `retry_on` counts as not yet; any other goes through. After `timeout` seconds:
    AssertionError naming `what` (or what `what(last value)` says); with `last_on_timeout`, the last
    value instead, for a caller whose own assertions say better what is missing."""

    def gave_up(state: RetryCallState) -> T:
        last = None
        if state.outcome is not None and not state.outcome.failed:
            last = state.outcome.result()
            if last_on_timeout:
                return last
        text = what(last) if callable(what) else what
        cause = state.outcome.exception() if state.outcome is not None and state.outcome.failed else None
        raise AssertionError(f"timed out after {timeout:g} s waiting for {text}") from cause

    retry = retry_if_result(lambda value: not until(value))
    if retry_on:
        retry = retry | retry_if_exception_type(retry_on)
    return Retrying(retry=retry, wait=wait_fixed(every), stop=stop_after_delay(timeout),
                    retry_error_callback=gave_up)(probe)
