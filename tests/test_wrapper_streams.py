"""A consumer that stops reading a wrapped backend stream early closes the backend's
stream, and the close is not reported as a backend failure."""

from __future__ import annotations

from collections.abc import AsyncIterator

from angos_core.registry.wrappers import WrappedBlobStore


class _Listing:
    name = "fake"

    def __init__(self) -> None:
        self.closed = False
        self.observed: list[tuple[str, str | None]] = []

    async def list_digests(self) -> AsyncIterator[str]:
        try:
            for i in range(10):
                yield f"sha256:{i:064x}"
        finally:
            self.closed = True


async def test_closing_a_stream_early_closes_the_backend_stream_without_an_error() -> None:
    inner = _Listing()
    observed: list[str | None] = []
    store = WrappedBlobStore(inner, lambda kind, backend, op, secs, err: observed.append(err))
    stream = store.list_digests()
    assert await anext(stream) == f"sha256:{0:064x}"
    await stream.aclose()  # type: ignore[attr-defined]
    assert inner.closed
    # GeneratorExit is control flow: observed as what it is, never as a BackendError.
    assert observed in ([], ["GeneratorExit"])


async def test_a_stream_read_to_the_end_reports_success() -> None:
    inner = _Listing()
    observed: list[str | None] = []
    store = WrappedBlobStore(inner, lambda kind, backend, op, secs, err: observed.append(err))
    assert len([d async for d in store.list_digests()]) == 10
    assert inner.closed
    assert observed == [None]
