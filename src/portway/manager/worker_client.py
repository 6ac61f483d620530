"""Signed calls from the manager to workers (deploy push, health probe)."""

from __future__ import annotations

import json

import httpx

from portway.cluster.messages import DeployAck, DeployNotice
from portway.cluster.signing import sign


class WorkerClient:
    def __init__(self, secret: bytes, timeout: float) -> None:
        self._secret = secret
        self._client = httpx.AsyncClient(timeout=timeout, trust_env=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def push(self, address: str, notice: DeployNotice) -> DeployAck:
        body = notice.model_dump_json().encode()
        target = "/_portway/deploy"
        headers = sign(self._secret, "POST", target, body)
        headers["Content-Type"] = "application/json"
        response = await self._client.post(address.rstrip("/") + target, content=body, headers=headers)
        if response.status_code != 200:
            raise httpx.HTTPStatusError(
                f"worker answered {response.status_code}: {response.text[:200]}",
                request=response.request,
                response=response,
            )
        return DeployAck.model_validate(json.loads(response.content))

    async def probe(self, address: str) -> bool:
        target = "/_portway/status"
        try:
            response = await self._client.get(
                address.rstrip("/") + target, headers=sign(self._secret, "GET", target)
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200
