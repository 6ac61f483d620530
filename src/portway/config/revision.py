"""What a worker pulls: the complete configuration of one environment at one revision.

The manager builds an ``EnvironmentRevision`` on every deploy, undeploy or rollback, numbers
it with a monotonically increasing ``revision`` per environment, and keeps it immutable. A
worker swaps its whole routing table to a new revision at once, so no request ever sees two
revisions mixed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from portway.config.base import JsonDatetime, Model, Slug
from portway.config.models import ApiProxy, PolicySpec
from portway.config.variables import RevisionVariable, expand, has_references, references
from portway.errors import ConfigError


class DeployedApi(Model):
    api: ApiProxy
    api_revision: Annotated[int, Field(ge=1, description="revision of the API proxy deployed")]


def api_key_lookup(key: str) -> str:
    """How an API key is stored (``CredentialSnapshot.lookup``) and looked up by the ``api_key``
    policy: the sha256 hex of its UTF-8 bytes."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class SecretSnapshot(Model):
    """One live secret version of an API client."""

    version: Annotated[int, Field(ge=1)]
    secret_hash: Annotated[str, Field(description="argon2 hash of the secret")]
    expires_at: JsonDatetime | None = None


class CredentialSnapshot(Model):
    """A consumer credential as workers see it: hashes only, never the secret."""

    id: str
    kind: Annotated[str, Field(pattern=r"^(api_key|basic|digest|client)$")]
    lookup: Annotated[
        str,
        Field(
            description="sha256 hex of the API key, the basic username, the client_id, or "
            "'digest:<username>:<realm>'"
        ),
    ]
    secret_hash: Annotated[str | None, Field(description="argon2 hash of a password")] = None
    username: Annotated[str | None, Field(description="digest only: the username")] = None
    realm: Annotated[str | None, Field(description="digest only: the realm HA1 was made for")] = (
        None
    )
    ha1: Annotated[
        dict[str, str],
        Field(
            description="digest only: H(username:realm:password) hex per hash ('SHA-256', "
            "and 'MD5' when the credential allows it); the password itself is never kept"
        ),
    ] = Field(default_factory=dict)
    secrets: Annotated[
        list[SecretSnapshot],
        Field(description="an API client's secret versions (any one that has not expired works)"),
    ] = Field(default_factory=list)
    expires_at: JsonDatetime | None = None
    disabled: bool = False


class GrantQuota(Model):
    """A consumer's quota on one API in one environment."""

    limit: Annotated[int, Field(ge=1, le=10**12, description="requests per period")]
    period: Annotated[str, Field(pattern=r"^(hour|day|week|month)$")] = "day"


class GrantThrottle(Model):
    """A consumer's throttling on one API in one environment."""

    limit: Annotated[int, Field(ge=1, le=10**9, description="requests per interval")]
    interval: Annotated[float, Field(gt=0, le=86400, description="seconds")] = 1.0


class GrantSnapshot(Model):
    api: Slug
    project: Slug = "default"
    expires_at: JsonDatetime | None = None
    environments: list[str] = Field(default_factory=list)
    quota: Annotated[
        GrantQuota | None, Field(description="this environment's quota for the consumer")
    ] = None
    throttling: Annotated[
        GrantThrottle | None, Field(description="this environment's throttling for the consumer")
    ] = None


class ConsumerSnapshot(Model):
    id: str
    name: str
    disabled: bool = False
    roles: list[str] = Field(default_factory=list)
    ip_allow: Annotated[
        list[str], Field(description="CIDRs the consumer may call from; empty: any address")
    ] = Field(default_factory=list)
    metadata: Annotated[
        dict[str, str], Field(description="the consumer's attributes (consumer.metadata.KEY)")
    ] = Field(default_factory=dict)
    credentials: list[CredentialSnapshot] = Field(default_factory=list)
    grants: list[GrantSnapshot] = Field(default_factory=list)


class SigningKeySnapshot(Model):
    """One of the environment's JWT signing keys, as workers see it."""

    kid: Annotated[str, Field(min_length=1, max_length=100, description="'kid' of its tokens")]
    algorithm: Literal["RS256", "ES256"]
    public_jwk: Annotated[
        dict[str, Any], Field(description="the public key as a JWK, as the JWKS publishes it")
    ]
    private_key: Annotated[
        str | None,
        Field(description="PEM private key; only the current key carries one (workers sign)"),
    ] = None
    current: Annotated[bool, Field(description="the key new tokens are signed with")] = False
    retire_at: Annotated[
        JsonDatetime | None,
        Field(description="a previous key: published and accepted until then"),
    ] = None


class EnvironmentRevision(Model):
    environment: Slug
    revision: Annotated[int, Field(ge=0)]
    created_at: JsonDatetime
    apis: list[DeployedApi] = Field(default_factory=list)
    global_policies: dict[str, PolicySpec] = Field(default_factory=dict)
    consumers: list[ConsumerSnapshot] = Field(default_factory=list)
    nonce_secret: Annotated[
        str,
        Field(
            description="random per revision: the key workers sign stateless nonces with "
            "(HTTP Digest); empty in revisions not built by a manager"
        ),
    ] = ""
    signing_keys: Annotated[
        list[SigningKeySnapshot],
        Field(description="the environment's JWT signing keys: the current one and those retiring"),
    ] = Field(default_factory=list)
    variables: Annotated[
        dict[str, RevisionVariable],
        Field(
            description="the environment's variables the APIs read (${env.NAME}), as the "
            "revision was built; secret values are answered as '***'"
        ),
    ] = Field(default_factory=dict)
    secret_values: Annotated[
        list[str],
        Field(
            description="set only in what workers pull: the secret variables' values expanded "
            "into the APIs, masked wherever they appear in traffic records"
        ),
    ] = Field(default_factory=list)

    @classmethod
    def read_for_serving(cls, raw: str | bytes) -> EnvironmentRevision:
        """Parse a revision a worker will only read, one API at a time, its default parts shared.

        An API proxy is some fourteen models (connection, health checks, breaker, capture
        regions, ...), mostly at their defaults: parsed whole, 10,000 APIs cost ~95 MB. Parsing
        API by API and making every part left at its defaults one shared instance per model class
        lets each API's default parts be freed (and their memory reused) before the next is
        parsed. Nothing may modify the result. Raises ``ValueError`` naming the API at fault.
        """
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("a revision is a JSON object")
        items = doc.pop("apis", [])
        revision = cls.model_validate(doc)
        if not isinstance(items, list):
            raise ValueError("apis: a list is required")
        shared: dict[type[BaseModel], BaseModel] = {}
        for index, item in enumerate(items):
            try:
                deployed = DeployedApi.model_validate(item)
            except ValidationError as exc:
                raise ValueError(f"apis[{index}]: {exc}") from None
            _share_defaults(deployed.api, shared)
            revision.apis.append(deployed)
        return revision


def _share_defaults(model: BaseModel, shared: dict[type[BaseModel], BaseModel]) -> None:
    fields = model.__dict__
    for name, value in fields.items():
        if isinstance(value, BaseModel):
            if value.model_fields_set:
                _share_defaults(value, shared)
            else:  # every field at its default: equal to any other instance left at defaults
                fields[name] = shared.setdefault(type(value), value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    _share_defaults(item, shared)


def expand_apis(
    environment: str, apis: Sequence[DeployedApi], variables: Mapping[str, RevisionVariable]
) -> list[DeployedApi]:
    """``apis`` with their variable references expanded (``expand_api``); ``ConfigError`` names
    the API, the field and the variable."""
    expanded_apis = []
    for deployed in apis:
        api = deployed.api
        try:
            expanded = expand_api(api, variables)
        except ConfigError as exc:
            raise ConfigError(
                f"API {api.project}/{api.name} in environment {environment}: {exc.message}",
                f"apis[{api.project}/{api.name}].{exc.field}",
            ) from None
        expanded_apis.append(
            deployed
            if expanded is api
            else DeployedApi(api=expanded, api_revision=deployed.api_revision)
        )
    return expanded_apis


def expanded_revision(revision: EnvironmentRevision) -> EnvironmentRevision:
    """What a worker runs: ``revision`` with its APIs' variable references expanded and no
    variables left."""
    apis = expand_apis(revision.environment, revision.apis, revision.variables)
    secret = sorted({v.value for v in revision.variables.values() if v.secret and v.value})
    return revision.model_copy(update={"apis": apis, "variables": {}, "secret_values": secret})


def referenced_variables(api: ApiProxy) -> set[str]:
    """The variables ``api`` reads in its backend URLs and policy configs (malformed references
    are left to ``expand_api`` to report)."""
    data = api.model_dump(mode="json")
    parts: list[Any] = [b["url"] for b in data["backends"]]
    for owner in (data, *data["endpoints"]):
        for entries in owner["policies"].values():
            parts.extend(spec["config"] for spec in entries)
    text = json.dumps(parts)
    if not has_references(text):
        return set()
    try:
        return set(references(text))
    except ValueError:
        return set()


def _expand_value(value: Any, values: Mapping[str, RevisionVariable], where: str) -> Any:
    if isinstance(value, str):
        return expand(value, values, where)
    if isinstance(value, dict):
        return {k: _expand_value(v, values, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_value(v, values, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _policy_lists(owner: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for side, entries in (owner.get("policies") or {}).items():
        for index, spec in enumerate(entries):
            found.append((f"policies.{side}[{index}]", spec))
    return found


def expand_api(api: ApiProxy, values: Mapping[str, RevisionVariable]) -> ApiProxy:
    """``api`` with the references in its backend URLs and policy configs expanded and checked
    again by the model (a backend URL must still be an http(s) URL). ``ConfigError`` names the
    field (``backends[0].url``) and the variable; a secret variable in a backend URL is
    refused."""
    data = api.model_dump(mode="json")
    if not has_references(api.model_dump_json()):
        return api
    for index, backend in enumerate(data.get("backends") or []):
        where = f"backends[{index}].url"
        try:
            names = references(backend["url"])
        except ValueError as exc:
            raise ConfigError(str(exc), where) from None
        for name in names:
            if name in values and values[name].secret:
                raise ConfigError(
                    f"secret variable {name} may not be used in a backend URL "
                    "(addresses appear in traffic records and logs)",
                    where,
                )
        backend["url"] = expand(backend["url"], values, where)
    scopes: list[tuple[str, dict[str, Any]]] = [("", data)]
    scopes += [(f"endpoints[{i}].", e) for i, e in enumerate(data.get("endpoints") or [])]
    for prefix, owner in scopes:
        for where, spec in _policy_lists(owner):
            spec["config"] = _expand_value(
                spec.get("config") or {}, values, f"{prefix}{where}.config"
            )
    try:
        return ApiProxy.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        # the message only: the input may carry a variable's value
        raise ConfigError(f"once variables are expanded: {message}", field.lstrip(".")) from None
