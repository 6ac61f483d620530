"""Time restriction: allow (or deny) requests by weekday and time of day in a time zone."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from portway.policies.base import Build, Deny, ErrorSpec, Policy, PolicyConfig
from portway.policies.contract import PolicyContext, Reply
from portway.policies.quota import check_zone

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")


def _minutes(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


class TimeWindow(PolicyConfig):
    days: Annotated[list[Day], Field(min_length=1, description="weekdays of the window")] = Field(
        default_factory=lambda: list(DAYS)
    )
    start: Annotated[str, Field(description="HH:MM, inclusive")]
    end: Annotated[str, Field(description="HH:MM, exclusive; before start = past midnight")]

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: str) -> str:
        if not _HHMM.fullmatch(value):
            raise ValueError("must be HH:MM (00:00 to 24:00)")
        return value

    @model_validator(mode="after")
    def _rules(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class TimeRestrictionConfig(PolicyConfig):
    mode: Annotated[
        Literal["allow", "deny"],
        Field(description="allow only inside the windows, or deny inside them"),
    ] = "allow"
    time_zone: Annotated[str, Field(max_length=100, description="IANA time zone")] = "UTC"
    windows: Annotated[
        list[TimeWindow], Field(min_length=1, max_length=100, description="the time windows")
    ]

    _zone = field_validator("time_zone")(classmethod(lambda cls, v: check_zone(v)))


def inside(window: TimeWindow, moment: datetime) -> bool:
    start, end = _minutes(window.start), _minutes(window.end)
    minute = moment.hour * 60 + moment.minute
    today = DAYS[moment.weekday()]
    if start < end:
        return today in window.days and start <= minute < end
    # overnight: the part after start belongs to today, the part before end to yesterday
    yesterday = DAYS[(moment.weekday() - 1) % 7]
    return (today in window.days and minute >= start) or (yesterday in window.days and minute < end)


class TimeRestrictionPolicy(Policy[TimeRestrictionConfig]):
    type_name = "time_restriction"
    summary = "Allow or deny requests by weekday and time of day in a time zone."
    config_model = TimeRestrictionConfig
    errors = {"outside_allowed_time": ErrorSpec(403, "the API is not available at this time")}
    __slots__ = ("_zone",)

    def __init__(self, config: TimeRestrictionConfig, build: Build) -> None:
        super().__init__(config, build)
        self._zone = ZoneInfo(config.time_zone)

    async def on_request(self, ctx: PolicyContext) -> Reply | None:
        moment = datetime.fromtimestamp(self.services.clock(), self._zone)
        hit = any(inside(w, moment) for w in self.config.windows)
        if hit != (self.config.mode == "allow"):
            raise Deny("outside_allowed_time")
        return None
