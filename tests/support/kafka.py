"""A Kafka broker in KRaft mode (broker and controller in one process, no ZooKeeper) on free
loopback ports, from the jars ``scripts/provision`` resolved with Maven (``KAFKA_LIBS``)."""

from __future__ import annotations

import base64
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path

from portway.deploy.lab_ca import LabCertificates
from portway.lab.provisioned import manifest
from tests.support.servers import LOOPBACK, Server, free_port, require, tcp_open

LOG4J = """log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
"""


@dataclass(frozen=True)
class Kafka:
    server: Server
    tls_port: int
    """an SSL listener with the lab certificate (PEM key store)"""

    @property
    def port(self) -> int:
        return self.server.port


def kafka_server(workdir: Path, certs: LabCertificates) -> Kafka:
    libs = require("KAFKA_LIBS")
    java = str(Path(manifest().get("JAVA_HOME", "/usr")) / "bin" / "java")
    port, tls_port, controller = free_port(), free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "server.properties"
    listeners = f"PLAINTEXT://{LOOPBACK}:{port},SSL://{LOOPBACK}:{tls_port}"
    config.write_text(
        "process.roles=broker,controller\n"
        "node.id=1\n"
        f"controller.quorum.voters=1@{LOOPBACK}:{controller}\n"
        f"listeners={listeners},CONTROLLER://{LOOPBACK}:{controller}\n"
        f"advertised.listeners={listeners}\n"
        "controller.listener.names=CONTROLLER\n"
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,CONTROLLER:PLAINTEXT\n"
        "ssl.keystore.type=PEM\n"
        f"ssl.keystore.location={certs.bundle_file}\n"
        f"log.dirs={workdir / 'data'}\n"
        "offsets.topic.replication.factor=1\n"
        "transaction.state.log.replication.factor=1\n"
        "transaction.state.log.min.isr=1\n"
        "num.partitions=1\n"
        "group.initial.rebalance.delay.ms=0\n"
    )
    (workdir / "log4j.properties").write_text(LOG4J)
    cluster = "-"
    while cluster.startswith("-"):  # as Kafka's Uuid.randomUuid: an id starting with '-' reads
        # as an option on the storage tool's command line (1 in 64 random ids did)
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    jvm = [java, "-Xmx384m", "-Dlog4j.configuration=file:log4j.properties", "-cp", f"{libs}/*"]
    storage = ["kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", cluster]
    script = (
        f"{shlex.join([*jvm, *storage, '-c', str(config)])}"
        f" && exec {shlex.join([*jvm, 'kafka.Kafka', str(config)])}"
    )
    server = Server(
        "kafka",
        ["sh", "-c", script],
        port,
        workdir,
        lambda s: tcp_open(s.port) and tcp_open(tls_port),
        startup_timeout=180,
    )
    return Kafka(server, tls_port)
