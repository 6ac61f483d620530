"""Routes: alert rules, notification channels, silences (admin: ``manage_environments``), and the
alerts, events and deliveries they produce (any reader)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from portway.config.management.alerts import (
    AlertDelivery,
    AlertEvent,
    AlertState,
    ChannelView,
    RuleView,
    SilenceView,
)
from portway.manager.alerts.service import CHANNELS, RULES, SILENCES, channel_view
from portway.manager.alerts.specs import ChannelSpec, RuleSpec, SilenceSpec
from portway.manager.deps import EnvManager, IfMatch, Reader, Svc, if_match, versioned
from portway.stores.config_store import Document

router = APIRouter(prefix="/alerts", tags=["alerts"])
Name = Annotated[str, Path(max_length=63)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def _plain(doc: Document) -> dict[str, Any]:
    return {"id": doc.id, **doc.data, "version": doc.version}


def _channel(doc: Document, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = f'"{doc.version}"'
    return channel_view(doc)


# rules ---------------------------------------------------------------------------------------
@router.get("/rules", response_model=list[RuleView])
async def list_rules(svc: Svc, _: Reader) -> list[dict[str, Any]]:
    return [_plain(d) for d in await svc.store.find(RULES)]


@router.post("/rules", status_code=201, response_model=RuleView)
async def create_rule(
    body: RuleSpec, svc: Svc, who: EnvManager, response: Response
) -> dict[str, Any]:
    return versioned(await svc.alerts.save_rule(body, who.username), response)


@router.get("/rules/{name}", response_model=RuleView)
async def get_rule(name: Name, svc: Svc, _: Reader, response: Response) -> dict[str, Any]:
    return versioned(await svc.alerts.get(RULES, name), response)


@router.put("/rules/{name}", response_model=RuleView)
async def replace_rule(
    name: Name, body: RuleSpec, svc: Svc, who: EnvManager, response: Response, match: IfMatch = None
) -> dict[str, Any]:
    doc = await svc.alerts.save_rule(body, who.username, name, if_match(match))
    return versioned(doc, response)


@router.delete("/rules/{name}", status_code=204)
async def delete_rule(name: Name, svc: Svc, who: EnvManager, match: IfMatch = None) -> None:
    await svc.alerts.delete_rule(name, if_match(match), who.username)


# channels ------------------------------------------------------------------------------------
@router.get("/channels", response_model=list[ChannelView])
async def list_channels(svc: Svc, _: Reader) -> list[dict[str, Any]]:
    return [channel_view(d) for d in await svc.store.find(CHANNELS)]


@router.post("/channels", status_code=201, response_model=ChannelView)
async def create_channel(
    body: ChannelSpec, svc: Svc, who: EnvManager, response: Response
) -> dict[str, Any]:
    return _channel(await svc.alerts.save_channel(body, who.username), response)


@router.get("/channels/{name}", response_model=ChannelView)
async def get_channel(name: Name, svc: Svc, _: Reader, response: Response) -> dict[str, Any]:
    return _channel(await svc.alerts.get(CHANNELS, name), response)


@router.put("/channels/{name}", response_model=ChannelView)
async def replace_channel(
    name: Name,
    body: ChannelSpec,
    svc: Svc,
    who: EnvManager,
    response: Response,
    match: IfMatch = None,
) -> dict[str, Any]:
    doc = await svc.alerts.save_channel(body, who.username, name, if_match(match))
    return _channel(doc, response)


@router.delete("/channels/{name}", status_code=204)
async def delete_channel(name: Name, svc: Svc, who: EnvManager, match: IfMatch = None) -> None:
    await svc.alerts.delete_channel(name, if_match(match), who.username)


# silences ------------------------------------------------------------------------------------
@router.get("/silences", response_model=list[SilenceView])
async def list_silences(svc: Svc, _: Reader) -> list[dict[str, Any]]:
    return [_plain(d) for d in await svc.store.find(SILENCES)]


@router.post("/silences", status_code=201, response_model=SilenceView)
async def create_silence(body: SilenceSpec, svc: Svc, who: EnvManager) -> dict[str, Any]:
    return _plain(await svc.alerts.add_silence(body, who.username))


@router.delete("/silences/{silence_id}", status_code=204)
async def delete_silence(
    silence_id: Annotated[str, Path(max_length=64)], svc: Svc, who: EnvManager
) -> None:
    await svc.alerts.delete_silence(silence_id, who.username)


# what the rules produce ----------------------------------------------------------------------
@router.get("/active", response_model=list[AlertState])
async def active_alerts(
    svc: Svc, _: Reader, rule: Annotated[str | None, Query(max_length=63)] = None
) -> list[dict[str, Any]]:
    """Alerts that are pending or firing now."""
    states = await svc.store.find("alert_states", {"rule": rule} if rule else None)
    return [_plain(d) for d in states if d.data.get("status") != "ok"]


@router.get("/events", response_model=list[AlertEvent])
async def alert_events(
    svc: Svc,
    _: Reader,
    rule: Annotated[str | None, Query(max_length=63)] = None,
    status: Literal["firing", "resolved"] | None = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    """Every firing and resolved event, newest first (silenced ones name their silences)."""
    where: dict[str, Any] = {}
    if rule:
        where["rule"] = rule
    if status:
        where["status"] = status
    docs = await svc.store.find("alert_events", where or None)
    return [_plain(d) for d in sorted(docs, key=lambda d: d.data["at"], reverse=True)[:limit]]


@router.get("/deliveries", response_model=list[AlertDelivery])
async def alert_deliveries(
    svc: Svc,
    _: Reader,
    event: Annotated[str | None, Query(max_length=200)] = None,
    state: Literal["pending", "delivered", "failed"] | None = None,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    """Notifications per event and channel: attempts, last error, when delivered."""
    where: dict[str, Any] = {}
    if event:
        where["event"] = event
    if state:
        where["state"] = state
    docs = await svc.store.find("alert_deliveries", where or None)
    ordered = sorted(docs, key=lambda d: d.data["created_at"], reverse=True)
    return [_plain(d) for d in ordered[:limit]]
