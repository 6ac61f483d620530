"""The protocol tests run on uvloop, like the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest
import uvloop
from pytest_asyncio.plugin import LoopFactory

from portway.compile.routes import PipelineFactory
from portway.policies.factory import route_pipelines
from portway.policies.resources import PolicyServices
from portway.stores.cache_local import LocalCache


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory] | None:
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
async def pipelines() -> AsyncIterator[PipelineFactory]:
    """The real policies, on the embedded caches."""
    cache, local = LocalCache(), LocalCache()
    await cache.open()
    await local.open()
    services = PolicyServices(environment="test", cache=cache, local_cache=local)
    yield route_pipelines(services)
    await services.aclose()
    await local.close()
    await cache.close()
