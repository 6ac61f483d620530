from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.policies.helpers import FakeClock, RecordingCache, World


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clock = FakeClock()
    state = World(clock, RecordingCache(clock), RecordingCache(clock))
    yield state
    if state.services is not None:
        await state.services.aclose()
