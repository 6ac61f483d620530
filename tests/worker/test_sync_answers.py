"""A status-report answer composed before a push arrives after the worker installed the push: the
worker must not go back to the older revision on its word alone (revision numbers only grow)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from portway.config.revision import EnvironmentRevision
from portway.errors import ClusterError
from portway.worker.sync import ConfigSync, SyncSettings


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def applied(_: EnvironmentRevision) -> None:
    raise AssertionError("no revision may be installed")


def sync(tmp_path: Path) -> ConfigSync:
    settings = SyncSettings(
        manager_url=f"http://127.0.0.1:{closed_port()}",  # nothing listens: a pull fails loudly
        environment="dev",
        worker_id="w1",
        advertise_url="http://127.0.0.1:1",
        secret=b"s" * 32,
        state_dir=tmp_path,
        request_timeout=2.0,
    )
    return ConfigSync(settings, applied)


def test_an_older_report_answer_is_skipped_once_then_believed(tmp_path: Path) -> None:
    async def scenario() -> None:
        worker = sync(tmp_path)
        try:
            worker.state.served_revision = 5
            await worker._converge(4, from_report=True)  # stale: no pull, nothing installed
            assert worker.state.desired_revision is None
            with pytest.raises(ClusterError):  # said again: the manager's word, pulled
                await worker._converge(4, from_report=True)
            assert worker.state.desired_revision == 4
        finally:
            await worker.close()

    asyncio.run(scenario())


def test_a_newer_or_equal_answer_and_a_push_are_followed_at_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        worker = sync(tmp_path)
        try:
            worker.state.served_revision = 5
            await worker._converge(5, from_report=True)  # served already: nothing to do
            with pytest.raises(ClusterError):
                await worker._converge(6, from_report=True)
            with pytest.raises(ClusterError):  # a push is never second-guessed
                await worker._converge(3)
        finally:
            await worker.close()

    asyncio.run(scenario())


def test_an_answer_that_waited_for_a_push_to_install_does_not_undo_it(tmp_path: Path) -> None:
    """Serving 3, a report answer says 3 while a push of 4 holds the lock (pulling, compiling);
    once 4 is installed the answer is older than what is served: skipped, not pulled. (It used
    to be judged before the wait, as current, and then put 3 back: a credential disabled by
    revision 4 worked again until the next report.)"""

    async def scenario() -> None:
        worker = sync(tmp_path)
        try:
            worker.state.served_revision = 3
            await worker._lock.acquire()  # the push of 4, mid-install
            answer = asyncio.create_task(worker._converge(3, from_report=True))
            await asyncio.sleep(0.05)
            assert not answer.done()
            worker.state.served_revision = 4
            worker._lock.release()
            await answer  # no pull (it would fail: nothing listens), nothing installed
            assert worker.state.served_revision == 4
        finally:
            await worker.close()

    asyncio.run(scenario())
