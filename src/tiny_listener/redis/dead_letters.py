"""Reading dead letters back and replaying them once their cause is fixed."""

from __future__ import annotations

from typing import Any, Callable, List

from ..optional import require
from ._config import DEFAULT_URL
from ._message import DeadLetter

READ_CHUNK = 100


async def read_dead_letters(dead_letter_stream: str, *, url: str = DEFAULT_URL, client: Any = None,
                            count: int | None = None) -> List[DeadLetter]:
    """Return the dead letters of ``dead_letter_stream`` (up to ``count``), oldest first."""
    async with _Connection(url, client) as redis:
        letters: List[DeadLetter] = []
        start: bytes | str = "-"
        while count is None or len(letters) < count:
            entries = await redis.xrange(dead_letter_stream, min=start, count=READ_CHUNK)
            if not entries:
                break
            letters.extend(DeadLetter.from_entry(entry_id, fields) for entry_id, fields in entries)
            start = b"(" + entries[-1][0]
        return letters if count is None else letters[:count]


async def replay_dead_letters(
    dead_letter_stream: str,
    *,
    url: str = DEFAULT_URL,
    client: Any = None,
    to_stream: str | None = None,
    only: Callable[[DeadLetter], bool] | None = None,
    count: int | None = None,
) -> int:
    """Publish dead letters again and remove them from ``dead_letter_stream``; return how many.

    Each one goes back, as it was first published, to the stream it came from (or
    ``to_stream``), in one transaction with its removal: a replayed message is never lost and
    never left behind as well. ``only`` selects which to replay (the others stay), ``count``
    bounds how many. Replay after fixing the cause (a handler bug, a missing route), or the
    messages come back.
    """
    replayed = 0
    async with _Connection(url, client) as redis:
        start: bytes | str = "-"
        while count is None or replayed < count:
            entries = await redis.xrange(dead_letter_stream, min=start, count=READ_CHUNK)
            if not entries:
                break
            start = b"(" + entries[-1][0]
            for entry_id, fields in entries:
                letter = DeadLetter.from_entry(entry_id, fields)
                target = to_stream or letter.stream
                if not target or (only is not None and not only(letter)):
                    continue
                async with redis.pipeline(transaction=True) as pipe:
                    pipe.xadd(target, letter.original)
                    pipe.xdel(dead_letter_stream, entry_id)
                    await pipe.execute()
                replayed += 1
                if count is not None and replayed >= count:
                    break
    return replayed


class _Connection:
    """The given client, or a client made from ``url`` and closed on exit."""

    def __init__(self, url: str, client: Any) -> None:
        self._owned = client is None
        self.client = client if client is not None else require("redis.asyncio", extra="redis").from_url(url)

    async def __aenter__(self) -> Any:
        return self.client

    async def __aexit__(self, *exc_info: object) -> None:
        if self._owned:
            await self.client.aclose()
