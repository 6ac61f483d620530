"""Signed calls from the manager to workers (deploy push, health probe); their answers are
verified (``verify_answer``) before they are believed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from portway.cluster.messages import DeployAck, DeployNotice
from portway.cluster.signing import REQUEST_ID_HEADER, AnswerRefused, sign, verify_answer
from portway.cluster.transport import tls_verification


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    ok: bool
    error: str | None = None
    status: dict[str, Any] | None = None


class WorkerClient:
    def __init__(
        self,
        secret: bytes,
        timeout: float,
        probe_timeout: float = 5.0,
        ca_file: Path | None = None,
    ) -> None:
        self._secret = secret
        self._client = httpx.AsyncClient(
            timeout=timeout, trust_env=False, verify=tls_verification(ca_file)
        )
        self._probe_timeout = probe_timeout

    async def close(self) -> None:
        await self._client.aclose()

    async def push(self, address: str, notice: DeployNotice) -> DeployAck:
        body = notice.model_dump_json().encode()
        target = "/_portway/deploy"
        headers = sign(self._secret, "POST", target, body)
        headers["Content-Type"] = "application/json"
        response = await self._client.post(
            address.rstrip("/") + target, content=body, headers=headers
        )
        verify_answer(
            self._secret,
            headers[REQUEST_ID_HEADER],
            response.status_code,
            response.content,
            response.headers,
            revision=notice.revision if response.status_code == 200 else None,
        )
        if response.status_code != 200:
            raise httpx.HTTPStatusError(
                f"worker answered {response.status_code}: {response.text[:200]}",
                request=response.request,
                response=response,
            )
        return DeployAck.model_validate(json.loads(response.content))

    async def probe_status(self, address: str) -> ProbeAnswer:
        """The manager's health probe: the worker's signed ``GET /_portway/status``."""
        target = "/_portway/status"
        headers = sign(self._secret, "GET", target)
        try:
            response = await self._client.get(
                address.rstrip("/") + target, headers=headers, timeout=self._probe_timeout
            )
        except httpx.HTTPError as exc:
            return ProbeAnswer(False, f"{type(exc).__name__}: {exc}"[:300])
        try:
            verify_answer(
                self._secret,
                headers[REQUEST_ID_HEADER],
                response.status_code,
                response.content,
                response.headers,
            )
        except AnswerRefused as exc:
            return ProbeAnswer(False, f"status answer refused: {exc}")
        if response.status_code != 200:
            return ProbeAnswer(False, f"status answered {response.status_code}")
        try:
            status = response.json()
        except ValueError:
            return ProbeAnswer(False, "status answer is not JSON")
        return ProbeAnswer(True, None, status if isinstance(status, dict) else None)

    async def probe(self, address: str) -> bool:
        return (await self.probe_status(address)).ok
