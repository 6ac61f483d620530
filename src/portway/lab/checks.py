"""``portway lab audit | drill NAME | report``: the real ``portway audit`` from every zone, the
failure drills with their figures, and the report of both."""

from __future__ import annotations

import contextlib
import itertools
import json
import mailbox
import os
import platform as host_platform
import secrets
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx

from portway.lab import netns, topology
from portway.lab.netns import in_namespace
from portway.lab.provisioned import manifest
from portway.lab.state import LabDir
from portway.lab.up import (
    DEMO_API,
    DEMO_PATH,
    PYTHON,
    SNI,
    LabApi,
    LabError,
    admin_token,
    apply_firewall,
    http_get,
    is_up,
    lab_namespaces,
    lab_trust,
    maildir,
    profile_of,
    public_headers,
    public_url,
    restart_elasticsearch,
    rss_kib,
    start,
    start_hazelcast,
    start_smtp,
    start_worker,
    stop,
    stop_elasticsearch,
    tcp_open,
    wait_for,
    wait_for_elasticsearch,
    wait_for_hazelcast,
    worker_ready,
    workers,
)

AUDIT_TIMEOUT = 120


def _require_up(lab: LabDir) -> None:
    if not is_up(lab):
        raise LabError(f"the lab in {lab.path} is not up: run `portway lab up --small`")


def audit_from(lab: LabDir, zone: str) -> dict[str, Any]:
    """``portway audit`` run inside the zone's namespace; its verdicts beside its exit status."""
    short, vantage = topology.AUDIT_VANTAGES[zone]
    command = lab_namespaces(lab).exec_argv(short, [
        *PYTHON, "audit", "--config", str(lab.config_file), "--from", vantage,
        "--format", "json", "--timeout", "1.5", "--ca-file", str(lab.ca_dir / "ca.pem"),
    ])  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=AUDIT_TIMEOUT, check=False, cwd=lab.path
    )
    if not result.stdout:
        raise LabError(f"audit from {zone} printed nothing: {result.stderr.strip()}")
    report = json.loads(result.stdout)
    probes = report["probes"]
    return {
        "zone": zone,
        "from": vantage,
        "exit": result.returncode,
        "probes": len(probes),
        "open": sorted(f"{p['host']}:{p['port']}" for p in probes if p["observed"] == "open"),
        "violations": [
            f"{p['host']}:{p['port']} expected {p['expected']}, observed {p['observed']}"
            for p in probes
            if p["verdict"] == "violation"
        ],
        "tls": [f"{t['host']}:{t['port']} {'ok' if t['ok'] else 'FAILED'}" for t in report["tls"]],
        "redirects": [
            f"{r['host']}:{r['port']} {r['status']} {'ok' if r['ok'] else 'FAILED'}"
            for r in report["redirects"]
        ],
    }


def run_audit(lab: LabDir) -> list[dict[str, Any]]:
    """Every zone's audit; recorded in the lab's state for ``report``."""
    _require_up(lab)
    with ThreadPoolExecutor(len(topology.AUDIT_VANTAGES)) as pool:
        results = list(pool.map(lambda zone: audit_from(lab, zone), topology.AUDIT_VANTAGES))
    lab.update(audit=results)
    return results


def audit_failed(results: list[dict[str, Any]]) -> bool:
    return any(r["exit"] != 0 or r["violations"] for r in results)


# --- drills ------------------------------------------------------------------------------------


@dataclass
class Load:
    """Bounded client load: ``rate`` GETs a second, from the Internet through the balancer unless
    ``namespace`` and ``url`` say otherwise. With ``ids``, each request carries the correlation id
    ``IDS-N`` and ``answered`` keeps the ids answered 200 (the worker logs a record under it)."""

    lab: LabDir
    key: str
    rate: float = 20.0
    ids: str | None = None
    namespace: str = "inet"
    url: str = public_url(DEMO_PATH)
    outcomes: Counter[str] = field(default_factory=Counter)
    answered: list[str] = field(default_factory=list)
    remaining: list[tuple[int, int] | None] = field(default_factory=list)
    """``X-RateLimit-Remaining`` and ``-Reset`` of each 200 in order (``None``: no count)"""
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        namespace = lab_namespaces(self.lab).ns(self.namespace)
        self.thread = threading.Thread(
            target=lambda: in_namespace(namespace, self._run, timeout=900), daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(trust_env=False, verify=lab_trust(self.lab), timeout=10.0) as client:
            for number in itertools.count(1):
                if self.stopping.is_set():
                    break
                began = time.monotonic()
                headers = {"X-Api-Key": self.key}
                if self.ids is not None:
                    headers["X-Correlation-ID"] = f"{self.ids}-{number}"
                try:
                    status = client.get(self.url, headers=public_headers(headers), extensions=SNI)
                    self.outcomes[str(status.status_code)] += 1
                    if self.ids is not None and status.status_code == 200:
                        self.answered.append(headers["X-Correlation-ID"])
                    if status.status_code == 200:
                        left = status.headers.get("X-RateLimit-Remaining")
                        reset = status.headers.get("X-RateLimit-Reset", "0")
                        self.remaining.append((int(left), int(reset)) if left else None)
                except httpx.HTTPError as exc:
                    self.outcomes[type(exc).__name__] += 1
                time.sleep(max(0.0, 1 / self.rate - (time.monotonic() - began)))

    def stop(self) -> dict[str, int]:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(30)
        return dict(self.outcomes)


def drill_kill_worker(lab: LabDir) -> dict[str, Any]:
    """Drill 1: SIGKILL worker-1 under load; the balancer retries; the registry shows it down;
    restarted, it serves the desired revision again."""
    _require_up(lab)
    api = LabApi(lab, admin_token(lab))
    load = Load(lab, lab.load()["api_key"])
    load.start()
    time.sleep(1)
    killed = time.monotonic()
    stop(lab, "worker-1", 9)
    wait_for(lab, "registry: worker-1 down",
             lambda: workers(api)["worker-1"]["state"] == "down", 30)  # fmt: skip
    seen_down = time.monotonic() - killed
    time.sleep(1)  # traffic while worker-1 is gone
    restarted = time.monotonic()
    start_worker(lab, "wk1")
    wait_for(lab, "worker-1 ready", lambda: worker_ready(lab, "wk1"), 60, "worker-1")
    wait_for(lab, "registry: worker-1 up and in sync",
             lambda: workers(api)["worker-1"]["in_sync"] is True, 30)  # fmt: skip
    in_sync = time.monotonic() - restarted
    time.sleep(2)  # traffic once it is back
    outcomes = load.stop()
    rows = workers(api)
    in_sync_after = {n: rows[n]["in_sync"] for n in ("worker-1", "worker-2")}
    total = sum(outcomes.values())
    errors = total - outcomes.get("200", 0)
    result = {
        "drill": "1",
        "name": "kill a worker (SIGKILL) under load",
        "requests": total,
        "client_errors": errors,
        "outcomes": outcomes,
        "rate_per_second": load.rate,
        "registry_state_after_kill": "down",
        "seconds_to_registry_down": round(seen_down, 1),
        "seconds_restart_to_in_sync": round(in_sync, 1),
        "in_sync_after": in_sync_after,
        "passed": errors == 0 and all(in_sync_after.values()),
    }
    _record_drill(lab, result)
    return result


WORKER_NAMES = ("worker-1", "worker-2")


def _deploy_demo(api: LabApi, label: str, note: str) -> tuple[int, dict[str, Any]]:
    """Change the demo API (its description names ``label``) and deploy it: the new environment
    revision and the deployment's answer."""
    changed = DEMO_API | {"description": f"{DEMO_API['description']} ({label})"}
    api.call("PUT", "/projects/default/apis/demo", changed)
    deployment: dict[str, Any] = api.call(
        "POST",
        f"/environments/{topology.ENVIRONMENT}/deployments",
        {"api": "demo", "note": note},
    )
    return int(deployment["env_revision"]), deployment


def _on(api: LabApi, revision: int, names: tuple[str, ...] = WORKER_NAMES) -> bool:
    """The registry shows every worker of ``names`` in sync, serving ``revision``."""
    rows = workers(api)
    return all(rows[n]["in_sync"] and rows[n]["served_revision"] == revision for n in names)


def drill_manager_outage(lab: LabDir, seconds: float = 60.0) -> dict[str, Any]:
    """Drill 2: the manager stops (SIGTERM) for ``seconds`` under load; the workers keep serving
    their revision. Back, a deploy must converge on both workers."""
    _require_up(lab)
    api = LabApi(lab, admin_token(lab))
    before = workers(api)["worker-1"]["desired_revision"]
    load = Load(lab, lab.load()["api_key"])
    load.start()
    time.sleep(1)
    stop(lab, "manager", 15)
    stopped = time.monotonic()
    time.sleep(seconds)
    served_alone = dict(load.outcomes)
    start(lab, "manager", "mgr", [*PYTHON, "manager", "--config", str(lab.config_file)])
    health = topology.url("mgr", 8080) + "/healthz"
    wait_for(lab, "manager back", lambda: http_get(lab, "vpn", health).status_code == 200,
             60, "manager")  # fmt: skip
    outage = time.monotonic() - stopped
    deployed = time.monotonic()
    revision = _deploy_demo(api, "drill 2", "lab drill 2: deploy after the manager's outage")[0]
    wait_for(lab, f"both workers on revision {revision}", lambda: _on(api, revision), 60)
    converge = time.monotonic() - deployed
    time.sleep(1)
    outcomes = load.stop()
    total = sum(outcomes.values())
    ok = outcomes.get("200", 0)
    alone = sum(served_alone.values())
    result = {
        "drill": "2",
        "name": f"manager stopped for {seconds:g} s under load, then a deploy",
        "requests": total,
        "requests_while_manager_down": alone,
        "served_percent": round(100 * ok / total, 2) if total else 0.0,
        "outcomes": outcomes,
        "seconds_manager_down": round(outage, 1),
        "revision_before": before,
        "revision_after": revision,
        "seconds_deploy_to_converged": round(converge, 1),
        "passed": total > 0 and ok == total and alone > 0 and revision != before,
    }
    _record_drill(lab, result)
    return result


#: how much a worker's resident memory may grow while Elasticsearch is away (its shipper spools to
#: disk; its memory queue holds at most 10 000 records)
RSS_GROWTH_LIMIT_MIB = 64.0
STREAM = "portway-traffic"


def _worker_rss_mib(lab: LabDir) -> dict[str, float]:
    processes = lab.load()["processes"]
    names = [str(topology.host(short).inventory) for short in topology.WORKERS]
    return {name: round(rss_kib(processes[name]["pid"]) / 1024, 1) for name in names}


def _spooled(lab: LabDir) -> dict[str, int]:
    """Records waiting in each worker's spool directory (its shipper's JSON-lines segments)."""
    out = {}
    for short in topology.WORKERS:
        name = str(topology.host(short).inventory)
        lines = 0
        for segment in (lab.path / "data" / name).glob("spool-*/*"):
            with contextlib.suppress(OSError):
                lines += segment.read_bytes().count(b"\n")
        out[name] = lines
    return out


def _es(lab: LabDir, method: str, path: str, body: Any = None) -> Any:
    """An Elasticsearch call from the manager's host (the matrix lets it reach 9200)."""
    url = topology.url(topology.ELASTICSEARCH_NODES[0], topology.ELASTICSEARCH_PORT) + path

    def call() -> Any:
        with httpx.Client(trust_env=False, timeout=30.0) as client:
            response = client.request(method, url, json=body)
            response.raise_for_status()
            return response.json()

    return in_namespace(lab_namespaces(lab).ns("mgr"), call)


def records_by_id(lab: LabDir, prefix: str) -> Counter[str]:
    """How many traffic records Elasticsearch holds for each correlation id starting with
    ``prefix``: counted over the record's ``correlation_id`` field in every backing index of the
    stream, so a record stored twice counts 2 (its ``_id`` only deduplicates within one index)."""
    _es(lab, "POST", f"/{STREAM}/_refresh")
    found: Counter[str] = Counter()
    field = {"terms": {"field": "correlation_id"}}
    composite: dict[str, Any] = {"size": 5000, "sources": [{"id": field}]}
    while True:
        body = {
            "size": 0,
            "query": {"prefix": {"correlation_id": prefix}},
            "aggs": {"ids": {"composite": composite}},
        }
        result = _es(lab, "POST", f"/{STREAM}/_search", body)["aggregations"]["ids"]
        for bucket in result["buckets"]:
            found[bucket["key"]["id"]] += bucket["doc_count"]
        if "after_key" not in result or not result["buckets"]:
            return found
        composite = {**composite, "after": result["after_key"]}


def drill_elasticsearch_outage(lab: LabDir, seconds: float = 60.0) -> dict[str, Any]:
    """Drill 4: Elasticsearch stops (SIGTERM) for ``seconds`` under load; the workers' shippers
    spool to disk. Back, every record of every request answered 200 must be in Elasticsearch
    exactly once (counted by correlation id), and no worker's memory may have grown by more than
    ``RSS_GROWTH_LIMIT_MIB``."""
    _require_up(lab)
    node = topology.ELASTICSEARCH_NODES[0]
    run = f"lab-d4-{secrets.token_hex(4)}"
    load = Load(lab, lab.load()["api_key"], ids=run)
    load.start()
    time.sleep(3)  # both workers have shipped a batch: their sink's client is loaded
    rss_before = _worker_rss_mib(lab)
    rss_peak = dict(rss_before)
    spool_peak = 0
    before_stop = sum(load.outcomes.values())
    stop_elasticsearch(lab, node)
    stopped = time.monotonic()
    while time.monotonic() - stopped < seconds:
        time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - stopped))))
        spool_peak = max(spool_peak, sum(_spooled(lab).values()))
        for name, mib in _worker_rss_mib(lab).items():
            rss_peak[name] = max(rss_peak[name], mib)
    served_alone = sum(load.outcomes.values()) - before_stop
    restarted = time.monotonic()
    restart_elasticsearch(lab, node)
    wait_for_elasticsearch(lab)
    outage, restart = time.monotonic() - stopped, time.monotonic() - restarted
    time.sleep(2)  # traffic once it is back
    outcomes = load.stop()
    answered = set(load.answered)
    returned = time.monotonic()
    wait_for(lab, "the workers' spools drained", lambda: not any(_spooled(lab).values()), 120)
    found: Counter[str] = Counter()

    def all_there() -> bool:
        nonlocal found
        found = records_by_id(lab, run)
        return answered <= set(found)

    with contextlib.suppress(LabError):  # what is missing after that is reported as lost
        wait_for(lab, "every answered request's record in Elasticsearch", all_there, 60)
    delivered = time.monotonic() - returned
    found = records_by_id(lab, run)
    lost = sorted(answered - set(found))
    duplicated = sorted(i for i, n in found.items() if n > 1)
    rss_after = _worker_rss_mib(lab)
    growth = {n: round(max(rss_peak[n], rss_after[n]) - rss_before[n], 1) for n in rss_before}
    total = sum(outcomes.values())
    result = {
        "drill": "4",
        "name": f"Elasticsearch stopped for {seconds:g} s under load",
        "requests": total,
        "requests_while_elasticsearch_down": served_alone,
        "outcomes": outcomes,
        "answered_200": len(answered),
        "records_in_elasticsearch": sum(found.values()),
        "records_lost": len(lost),
        "records_duplicated": sum(found[i] - 1 for i in duplicated),
        "records_of_unanswered_requests": len(set(found) - answered),
        "lost_examples": lost[:5],
        "duplicated_examples": duplicated[:5],
        "seconds_elasticsearch_down": round(outage, 1),
        "seconds_restart_to_healthy": round(restart, 1),
        "peak_records_spooled": spool_peak,
        "seconds_until_delivered": round(delivered, 1),
        "worker_rss_mib_before": rss_before,
        "worker_rss_mib_peak_during": rss_peak,
        "worker_rss_mib_after": rss_after,
        "worker_rss_growth_limit_mib": RSS_GROWTH_LIMIT_MIB,
        "passed": bool(answered)
        and served_alone > 0
        and spool_peak > 0
        and not lost
        and not duplicated
        and all(g <= RSS_GROWTH_LIMIT_MIB for g in growth.values()),
    }
    _record_drill(lab, result)
    return result


def drill_deploy_storm(lab: LabDir, deploys: int = 20) -> dict[str, Any]:
    """Drill 7: ``deploys`` deployments one after another under load, each waited for until both
    workers serve it; not one request may fail."""
    _require_up(lab)
    api = LabApi(lab, admin_token(lab))
    before = workers(api)["worker-1"]["served_revision"]
    load = Load(lab, lab.load()["api_key"])
    load.start()
    time.sleep(1)
    converge: list[float] = []
    acknowledged: list[int] = []
    revision = before
    try:
        for number in range(1, deploys + 1):
            began = time.monotonic()
            revision, deployment = _deploy_demo(
                api, f"drill 7, deploy {number}", f"lab drill 7: deploy {number} of {deploys}"
            )
            acknowledged.append(sum(1 for r in deployment["results"] if r.get("success")))
            wait_for(lab, f"both workers on revision {revision}",
                     lambda r=revision: _on(api, r), 60)  # type: ignore[misc]  # fmt: skip
            converge.append(round(time.monotonic() - began, 2))
        time.sleep(1)  # traffic after the last one
    finally:
        outcomes = load.stop()
    total = sum(outcomes.values())
    failed = total - outcomes.get("200", 0)
    ordered = sorted(converge)
    result = {
        "drill": "7",
        "name": f"{deploys} deploys under load",
        "requests": total,
        "failed_requests": failed,
        "outcomes": outcomes,
        "deploys": deploys,
        "deploys_converged_on_both_workers": len(converge),
        "deploys_acknowledged_by_both_at_once": sum(1 for n in acknowledged if n == 2),
        "revision_before": before,
        "revision_after": revision,
        "seconds_deploy_to_converged_median": ordered[len(ordered) // 2] if ordered else None,
        "seconds_deploy_to_converged_max": ordered[-1] if ordered else None,
        "passed": total > 0 and failed == 0 and len(converge) == deploys,
    }
    _record_drill(lab, result)
    return result


PARTITION_TABLE = "portway_lab_partition"


def _partition(lab: LabDir, one: str, other: str) -> None:
    """Drop every packet between hosts ``one`` and ``other`` on the router, both ways (nothing
    else: the zone tables still decide the rest)."""
    a, b = topology.host(one).address, topology.host(other).address
    lab_namespaces(lab).nft("rt", f"""table inet {PARTITION_TABLE} {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
        ip saddr {a} ip daddr {b} drop
        ip saddr {b} ip daddr {a} drop
    }}
}}
""")  # fmt: skip


def _heal(lab: LabDir) -> None:
    rt = lab_namespaces(lab).ns("rt")
    netns.sh("ip", "netns", "exec", rt, "nft", "delete", "table", "inet", PARTITION_TABLE,
             check=False)  # fmt: skip


def revisions_of(lab: LabDir, prefix: str) -> dict[str, int]:
    """How many traffic records with a correlation id starting with ``prefix`` each revision
    served (the record's ``revision``)."""
    _es(lab, "POST", f"/{STREAM}/_refresh")
    body = {
        "size": 0,
        "query": {"prefix": {"correlation_id": prefix}},
        "aggs": {"revisions": {"terms": {"field": "revision", "size": 100}}},
    }
    buckets = _es(lab, "POST", f"/{STREAM}/_search", body)["aggregations"]["revisions"]["buckets"]
    return {str(b["key"]): b["doc_count"] for b in buckets}


def drill_partition(lab: LabDir, seconds: float = 60.0) -> dict[str, Any]:
    """Drill 3: the manager and worker-1 cannot reach each other (nftables drop on the router,
    both ways) for at least ``seconds``, under load through the balancer and straight to
    worker-1 from the balancer's host. Worker-1 keeps serving its revision (its traffic records
    say which); a deploy during the partition reaches worker-2; healed, worker-1 converges."""
    _require_up(lab)
    api = LabApi(lab, admin_token(lab))
    before = workers(api)["worker-1"]["served_revision"]
    key = lab.load()["api_key"]
    run = f"lab-d3-{secrets.token_hex(4)}"
    load = Load(lab, key)
    direct = Load(lab, key, rate=5.0, ids=run, namespace="lb",
                  url=topology.url("wk1", 8080) + DEMO_PATH)  # fmt: skip
    load.start()
    time.sleep(1)
    try:
        _partition(lab, "mgr", "wk1")
        cut = time.monotonic()
        direct.start()
        wait_for(lab, "registry: worker-1 down",
                 lambda: workers(api)["worker-1"]["state"] == "down", 30)  # fmt: skip
        seen_down = time.monotonic() - cut
        deployed = time.monotonic()
        revision, deployment = _deploy_demo(
            api, "drill 3", "lab drill 3: deploy while worker-1 is cut off"
        )
        reached = sorted(r["worker"] for r in deployment["results"] if r.get("success"))
        wait_for(lab, f"worker-2 on revision {revision}",
                 lambda: _on(api, revision, ("worker-2",)), 60)  # fmt: skip
        other = time.monotonic() - deployed
        time.sleep(max(0.0, seconds - (time.monotonic() - cut)))
        still = workers(api)["worker-1"]
        direct_outcomes = direct.stop()
    finally:
        direct.stop()
        _heal(lab)
    healed = time.monotonic()
    partitioned = healed - cut
    try:
        wait_for(lab, f"worker-1 on revision {revision} after the heal",
                 lambda: _on(api, revision), 60)  # fmt: skip
        converge: float | None = time.monotonic() - healed
    except LabError:
        converge = None
    time.sleep(1)
    outcomes = load.stop()
    answered = set(direct.answered)
    with contextlib.suppress(LabError):
        wait_for(lab, "worker-1's records in Elasticsearch",
                 lambda: answered <= set(records_by_id(lab, run)), 60)  # fmt: skip
    served = revisions_of(lab, run)
    total, direct_total = sum(outcomes.values()), sum(direct_outcomes.values())
    result = {
        "drill": "3",
        "name": "partition manager <-> worker-1 (nftables drop on the router, both ways)",
        "requests": total,
        "outcomes": outcomes,
        "requests_straight_to_worker_1": direct_total,
        "outcomes_straight_to_worker_1": direct_outcomes,
        "revision_before": before,
        "revision_deployed": revision,
        "deploy_acknowledged_by": reached,
        "worker_1_revisions_served_while_cut_off": served,
        "registry_worker_1_while_cut_off": still["state"],
        "seconds_partition_to_registry_down": round(seen_down, 1),
        "seconds_deploy_to_worker_2_converged": round(other, 1),
        "seconds_partitioned": round(partitioned, 1),
        "seconds_heal_to_worker_1_converged": None if converge is None else round(converge, 1),
        "passed": total > 0
        and outcomes.get("200", 0) == total
        and direct_total > 0
        and direct_outcomes.get("200", 0) == direct_total
        and served == {str(before): len(answered)}
        and reached == ["worker-2"]
        and converge is not None,
    }
    _record_drill(lab, result)
    return result


ROGUE_PORT = 6379


def drill_rogue_port(lab: LabDir) -> dict[str, Any]:
    """Drill 8: a service on worker-1 on a port the matrix does not allow, opened on purpose in
    the host firewall and on the router (as an operator "just testing" would); the audit from the
    Internet must catch it and exit non-zero. Undone afterwards (the generated rules reloaded)."""
    _require_up(lab)
    spaces = lab_namespaces(lab)
    address = topology.host("wk1").address
    start(lab, "rogue", "wk1", [
        "python3", "-m", "http.server", str(ROGUE_PORT), "--bind", address,
    ])  # fmt: skip
    port = ["tcp", "dport", str(ROGUE_PORT), "accept"]
    try:
        netns.sh("ip", "netns", "exec", spaces.ns("wk1"), "nft", "insert", "rule",
                 "inet", "portway_host_worker_1", "input", *port)  # fmt: skip
        netns.sh("ip", "netns", "exec", spaces.ns("rt"), "nft", "insert", "rule",
                 "inet", "portway_zone_dmz", "to_dmz", "ip", "daddr", address, *port)  # fmt: skip
        wait_for(lab, "the rogue port from the Internet",
                 lambda: tcp_open(lab, "inet", address, ROGUE_PORT), 20, "rogue")  # fmt: skip
        caught = audit_from(lab, "internet")
    finally:
        stop(lab, "rogue", 9)
        state = lab.load()
        state.get("processes", {}).pop("rogue", None)
        lab.save(state)
        apply_firewall(lab)
    after = audit_from(lab, "internet")
    expected = f"worker-1:{ROGUE_PORT} expected closed, observed open"
    result = {
        "drill": "8",
        "name": f"a port the matrix does not allow ({ROGUE_PORT}) opened in the DMZ",
        "audit_exit": caught["exit"],
        "violations": caught["violations"],
        "audit_exit_after_undo": after["exit"],
        "passed": caught["exit"] != 0
        and caught["violations"] == [expected]
        and after["exit"] == 0
        and not after["violations"],
    }
    _record_drill(lab, result)
    return result


def load_figures(outcomes: dict[str, int]) -> dict[str, Any]:
    """Requests, client errors (anything but 200) and outcomes by status of a drill's load."""
    total = sum(outcomes.values())
    return {
        "requests": total,
        "client_errors": total - outcomes.get("200", 0),
        "outcomes": outcomes,
    }


def _mail_ids(lab: LabDir) -> list[str]:
    """``Message-ID``s of the mail smtp-1 accepted (one file each in the Maildir's ``new/``)."""
    box = maildir(lab)
    if not (box / "new").is_dir():
        return []
    found = []
    for message in mailbox.Maildir(box, create=False):
        found.append(str(message.get("Message-ID", "")))
    return found


def drill_smtp_outage(lab: LabDir, seconds: float = 10.0) -> dict[str, Any]:
    """Drill 6: smtp-1 stops; worker-1 is SIGKILLed under load (drill 1's failure), so the
    ``worker-down`` alert fires and its e-mail waits in the manager's outbox, retried with
    backoff; worker-1 comes back (the "resolved" notice queues too); ``seconds`` after the first
    failed attempt smtp-1 starts again and both notices must land in its Maildir, once each."""
    _require_up(lab)
    api = LabApi(lab, admin_token(lab))
    known = {d["id"] for d in api.call("GET", "/alerts/deliveries?limit=1000")}
    mail_before = len(_mail_ids(lab))
    stop(lab, "smtp", 15)
    smtp_stopped = time.monotonic()
    load = Load(lab, lab.load()["api_key"])
    load.start()
    time.sleep(1)
    killed = time.monotonic()
    stop(lab, "worker-1", 9)

    def ours() -> list[dict[str, Any]]:
        rows = api.call("GET", "/alerts/deliveries?limit=1000")
        return [d for d in rows if d["id"] not in known]

    def failed_attempts() -> list[dict[str, Any]]:
        # an attempt counts once it failed: the outbox raises ``attempts`` when it claims a
        # delivery, before it tries, and records ``last_error`` after the try
        return [d for d in ours() if d["state"] == "pending" and d["last_error"]]

    wait_for(lab, "the alert e-mail queued (a failed attempt)", lambda: bool(failed_attempts()), 60)
    seconds_queued = time.monotonic() - killed
    first_error = failed_attempts()[0]["last_error"]
    start_worker(lab, "wk1")
    wait_for(lab, "worker-1 ready", lambda: worker_ready(lab, "wk1"), 60, "worker-1")
    wait_for(lab, "registry: worker-1 in sync",
             lambda: workers(api)["worker-1"]["in_sync"] is True, 30)  # fmt: skip
    time.sleep(max(0.0, killed + seconds_queued + seconds - time.monotonic()))
    waiting = ours()
    smtp_back = time.monotonic()
    start_smtp(lab)

    def delivered() -> bool:
        rows = ours()
        return len(rows) >= 2 and all(d["state"] == "delivered" for d in rows)

    wait_for(lab, "the queued alert e-mails delivered", delivered, 60)
    seconds_delivery = time.monotonic() - smtp_back
    outcomes = load.stop()
    rows = ours()
    events = {e["id"]: e for e in api.call("GET", "/alerts/events?limit=1000")}
    statuses = sorted(f"{events[d['event']]['status']} {events[d['event']]['subject']}"
                      for d in rows if d["event"] in events)  # fmt: skip
    mail = _mail_ids(lab)
    ids = [f"<{d['id']}@portway>" for d in rows]
    load_seen = load_figures(outcomes)
    result = {
        "drill": "6",
        "name": "SMTP server stopped while a worker fails: the alert is queued, then delivered",
        **load_seen,
        "notices": statuses,
        "seconds_kill_to_queued": round(seconds_queued, 1),
        "first_error": first_error,
        "attempts_while_smtp_down": sum(d["attempts"] for d in waiting),
        "seconds_smtp_down": round(smtp_back - smtp_stopped, 1),
        "seconds_smtp_back_to_delivered": round(seconds_delivery, 1),
        "mails_received": len(mail) - mail_before,
        "passed": load_seen["client_errors"] == 0
        and statuses == ["firing worker-1", "resolved worker-1"]
        and all(mail.count(i) == 1 for i in ids)
        and len(mail) - mail_before == len(ids),
    }
    _record_drill(lab, result)
    return result


def count_steps(remaining: list[tuple[int, int] | None]) -> dict[str, int]:
    """How the shared throttling count moved between consecutive counted requests of one
    consumer (sequential, nobody else using its key). Between two counted answers with ``k``
    uncounted ones (fail-open: the cache did not answer in time, though it may have counted
    them) the count must go down by 1 to 1 + k: ``exact``; more is ``double`` (counted twice);
    up is a new window when the last one was about to end, else ``lost`` (a count the cache
    forgot). ``unchecked``: requests let through without a count."""
    steps = {"exact": 0, "lost": 0, "double": 0, "windows": 0, "unchecked": remaining.count(None)}
    previous: tuple[int, int] | None = None
    skipped = 0
    for seen in remaining:
        if seen is None:
            skipped += 1
            continue
        if previous is not None:
            drop = previous[0] - seen[0]
            if 1 <= drop <= 1 + skipped:
                steps["exact"] += 1
            elif drop > 1 + skipped:
                steps["double"] += 1
            elif previous[1] <= 2:
                steps["windows"] += 1
            else:
                steps["lost"] += 1
        previous, skipped = seen, 0
    return steps


def _counting_again(load: Load, since: int, timeout: float) -> bool:
    """Both workers count again: the last 6 answers after ``since`` all carry a count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        after = load.remaining[since:]
        if len(after) >= 6 and None not in after[-6:]:
            return True
        time.sleep(0.2)
    return False


def drill_cache_member_loss(lab: LabDir, seconds: float = 10.0) -> dict[str, Any]:
    """Drill 5: data-1's Hazelcast member stops (SIGTERM) under load for ``seconds``, then starts
    again. With two members (full profile) the throttling count must go on exactly, from the
    backup; with one (small), the throttling policy's ``on_store_unavailable: continue`` must
    hold: requests go through uncounted. Either way no 5xx."""
    _require_up(lab)
    profile = profile_of(lab)
    members = topology.HAZELCAST_MEMBERS[profile]
    load = Load(lab, lab.load()["api_key"])
    load.start()
    time.sleep(2)
    before = len(load.remaining)
    stop(lab, "hazelcast", 15)
    stopped = time.monotonic()
    time.sleep(seconds)
    during = list(load.remaining[before:])
    restarted = time.monotonic()
    start_hazelcast(lab, "data")
    wait_for_hazelcast(lab)
    seconds_rejoin = time.monotonic() - restarted
    down = restarted - stopped
    resumed = _counting_again(load, len(load.remaining), 60)
    seconds_counting = time.monotonic() - restarted
    time.sleep(2)  # traffic once the member is back
    outcomes = load.stop()
    steps = count_steps(load.remaining)
    load_seen = load_figures(outcomes)
    server_errors = sum(n for status, n in outcomes.items() if status.startswith("5"))
    if len(members) > 1:
        promise = "counters exact (the backup on the other member)"
        held = steps["lost"] == 0 and steps["double"] == 0
    else:  # the only member's counts go with it; what must hold is the configured fail-open
        promise = "fail-open (on_store_unavailable: continue): uncounted while down"
        held = steps["double"] == 0 and None in during
    result = {
        "drill": "5",
        "name": f"one of {len(members)} Hazelcast member(s) stopped under load",
        "profile": profile,
        "promise": promise,
        **load_seen,
        "server_errors": server_errors,
        "counted_steps": steps,
        "unchecked_while_down": during.count(None),
        "seconds_member_down": round(down, 1),
        "seconds_restart_to_cluster": round(seconds_rejoin, 1),
        "counting_after_restart": resumed,
        "seconds_restart_to_counting": round(seconds_counting, 1),
        "passed": server_errors == 0 and load_seen["client_errors"] == 0 and held and resumed,
    }
    _record_drill(lab, result)
    return result


DRILLS: dict[str, Callable[..., dict[str, Any]]] = {
    "1": drill_kill_worker,
    "2": drill_manager_outage,
    "3": drill_partition,
    "4": drill_elasticsearch_outage,
    "5": drill_cache_member_loss,
    "6": drill_smtp_outage,
    "7": drill_deploy_storm,
    "8": drill_rogue_port,
}


def _record_drill(lab: LabDir, result: dict[str, Any]) -> None:
    state = lab.load()
    state.setdefault("drills", {})[result["drill"]] = result
    lab.save(state)


# --- report ------------------------------------------------------------------------------------


def _first_line(*command: str) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "absent"
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def versions() -> dict[str, str]:
    found = manifest()
    return {
        "portway": version("portway"),
        "python": host_platform.python_version(),
        "kernel": host_platform.release(),
        "haproxy": _first_line("haproxy", "-v"),
        "nftables": _first_line("nft", "--version"),
        "iproute2": _first_line("ip", "-V"),
        "dnsmasq": _first_line("dnsmasq", "--version"),
        "aiosmtpd": _package_version("aiosmtpd"),
        "ferretdb": found.get("FERRETDB_VERSION", "unknown"),
        "hazelcast": found.get("HAZELCAST_VERSION", "unknown"),
        "elasticsearch": found.get("ELASTICSEARCH_VERSION", "unknown"),
    }


def build_report(lab: LabDir) -> dict[str, Any]:
    state = lab.load()
    if not state.get("ready"):
        raise LabError(f"no lab in {lab.path}: run `portway lab up --small` first")
    return {
        "schema": "portway.lab-report/v1",
        "profile": state.get("profile"),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "memory_gib": _memory_gib()},
        "versions": versions(),
        "ran": [f"{name} (namespace {p['ns']})" for name, p in sorted(state["processes"].items())],
        "not_in_this_profile": NOT_RUN
        + ([] if state.get("profile") == "full" else ["a second Hazelcast member (full profile)"]),
        "up": state.get("up", {}),
        "audit": state.get("audit", []),
        "drills": list(state.get("drills", {}).values()),
    }


NOT_RUN = [
    "a second Elasticsearch node (the 9300 flow between nodes is not exercised)",
]


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def render_markdown(report: dict[str, Any]) -> str:
    up = report["up"]
    lines = [
        f"# Portway lab report ({report['profile']} profile, {report['written_at']})",
        "",
        f"Machine: {report['machine']['cpus']} CPUs, {report['machine']['memory_gib']} GiB. "
        f"`up` took {up.get('seconds')} s (network and firewall {up.get('network_seconds')} s); "
        f"peak memory {up.get('peak_rss_mib')} MiB (sum of every lab process's peak RSS).",
        "",
        "## Versions",
        "",
        *[f"- {name}: {value}" for name, value in report["versions"].items()],
        "",
        "## What ran",
        "",
        *[f"- {item}" for item in report["ran"]],
        "",
        "Not in this profile: " + "; ".join(report["not_in_this_profile"]) + ".",
        "",
        "## Audit (the real `portway audit` from each zone)",
        "",
        "| zone | from | probes | open | violations | TLS | redirects | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in report["audit"]:
        verdict = "ok" if a["exit"] == 0 and not a["violations"] else "FAILED"
        lines.append(
            f"| {a['zone']} | {a['from']} | {a['probes']} | {', '.join(a['open']) or '—'} | "
            f"{'; '.join(a['violations']) or '—'} | {', '.join(a['tls']) or '—'} | "
            f"{', '.join(a['redirects']) or '—'} | {verdict} |"
        )
    lines += ["", "## Drills", ""]
    for d in report["drills"]:
        lines.append(
            f"### Drill {d['drill']}: {d['name']} — {'passed' if d['passed'] else 'FAILED'}"
        )
        lines.append("")
        lines += [f"- {k}: {v}" for k, v in d.items() if k not in ("drill", "name", "passed")]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_report(lab: LabDir, out: Path) -> tuple[Path, Path]:
    report = build_report(lab)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "lab-report.json", out / "lab-report.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(render_markdown(report))
    return md_path, json_path
