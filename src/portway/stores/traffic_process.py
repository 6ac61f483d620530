"""A traffic sink in a child process, so that storing records never competes with the worker's
event loop for the GIL.

    worker: Shipper ──► ProcessTrafficSink.write(batch) ══ pipe ══► child: the real sink (SQLite,
                           waits for the child's answer              Elasticsearch) .write(batch)

``ProcessTrafficSink(url)`` is what the worker's shipper writes to. Its ``write`` sends the whole
batch to a child process (``python -m portway.stores.traffic_process URL``) over the child's stdin
and waits for its answer, so the shipper's guarantees hold unchanged: a batch counts as delivered
only once the real sink stored it; ``StoreUnavailable`` (the sink is down, the child died or did
not answer within ``timeout``) makes the shipper spool the batch; ``RejectedRecords`` comes back as
it was raised in the child. A dead child is started again by the next write.

Frames both ways are a 4-byte big-endian length and a ``marshal``-encoded value. Requests:
``("open", None)``, ``("write", JSON)``, ``("close", None)``; answers: ``("ok", None)``,
``("rejected", [(id, why)])``, ``("unavailable", message)``. A batch travels as the JSON array of
its records (``record_json``: one orjson call, values JSON does not know as ``str``, as every sink
stores them), not as marshalled dicts: marshal encodes every key of every record to UTF-8 again,
~4x the worker's CPU per record. A sink that could not be opened is opened again by the next
request. The pipe is private to the worker and its child; the child exits when its stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import marshal
import struct
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from portway.errors import RejectedRecords, StoreUnavailable
from portway.stores._traffic_common import record_json
from portway.stores.traffic import TrafficRecord, open_traffic_sink

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
MAX_FRAME = 1 << 30


def encode(value: Any) -> bytes:
    data = marshal.dumps(value)
    return _LENGTH.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes is too large")
    # a private pipe between the worker and its own child; marshal loads data, runs nothing
    return marshal.loads(await reader.readexactly(length))  # noqa: S302


class ProcessTrafficSink:
    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        self._url = url
        self._timeout = timeout
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        async with self._lock:
            await self._ensure_started()

    async def write(self, records: Sequence[TrafficRecord]) -> None:
        async with self._lock:
            await self._ensure_started()
            await self._request("write", record_json(list(records)))

    async def close(self) -> None:
        async with self._lock:
            process, self._process = self._process, None
            if process is None:
                return
            with contextlib.suppress(StoreUnavailable):
                await self._exchange(process, "close", None)
            await _stop(process, self._timeout)

    async def _ensure_started(self) -> None:
        if self._process is not None and self._process.returncode is None:
            return
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "portway.stores.traffic_process",
            self._url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        await self._request("open", None)

    async def _request(self, kind: str, payload: Any) -> None:
        process = self._process
        assert process is not None
        try:
            answer, detail = await self._exchange(process, kind, payload)
        except StoreUnavailable:
            self._process = None
            await _stop(process, 1.0)
            raise
        if answer == "rejected":
            raise RejectedRecords([tuple(item) for item in detail])
        if answer != "ok":
            raise StoreUnavailable(str(detail))

    async def _exchange(
        self, process: asyncio.subprocess.Process, kind: str, payload: Any
    ) -> tuple[str, Any]:
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            async with asyncio.timeout(self._timeout):
                process.stdin.write(encode((kind, payload)))
                await process.stdin.drain()
                answer, detail = await read_frame(process.stdout)
        except (OSError, EOFError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise StoreUnavailable(f"traffic sink process: {exc or type(exc).__name__}") from exc
        return str(answer), detail


async def _stop(process: asyncio.subprocess.Process, grace: float) -> None:
    if process.stdin is not None:
        process.stdin.close()
    try:
        async with asyncio.timeout(grace):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


# -- the child ----------------------------------------------------------------------------------


def _batch(payload: bytes) -> list[TrafficRecord]:
    """A batch as the worker sent it. What orjson cannot encode (a lone surrogate, an integer
    beyond 64 bits) the standard encoder wrote, and only the standard parser reads back."""
    try:
        records: list[TrafficRecord] = orjson.loads(payload)
    except orjson.JSONDecodeError:
        records = json.loads(payload)
    return records


async def serve(url: str) -> None:
    """Answer the worker's requests on stdin/stdout until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_FRAME)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out = sys.stdout.buffer
    sink = open_traffic_sink(url)
    opened = False
    kind = ""
    try:
        while True:
            try:
                kind, payload = await read_frame(reader)
            except asyncio.IncompleteReadError:
                return  # the worker is gone or closed the pipe
            answer: tuple[str, Any] = ("ok", None)
            try:
                if kind in ("open", "write") and not opened:
                    await sink.open()  # until it succeeds, every request tries again
                    opened = True
                if kind == "write":
                    await sink.write(_batch(payload))
                elif kind == "close":
                    return
            except RejectedRecords as exc:
                answer = ("rejected", exc.rejected)
            except Exception as exc:
                answer = ("unavailable", f"{type(exc).__name__}: {exc}")
            finally:
                if kind != "close":
                    out.write(encode(answer))
                    out.flush()
    finally:
        if opened:
            await sink.close()
        if kind == "close":
            out.write(encode(("ok", None)))
            out.flush()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m portway.stores.traffic_process SINK_URL", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
