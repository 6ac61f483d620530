"""A Kafka broker in KRaft mode (broker and controller in one process, no ZooKeeper) on free
loopback ports, from the jars ``scripts/provision`` resolved with Maven (``KAFKA_LIBS``)."""

from __future__ import annotations

import base64
import shlex
import uuid
from pathlib import Path

from tests.support.servers import LOOPBACK, Server, free_port, manifest, require, tcp_open

LOG4J = """log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
"""


def kafka_server(workdir: Path) -> Server:
    libs = require("KAFKA_LIBS")
    java = str(Path(manifest().get("JAVA_HOME", "/usr")) / "bin" / "java")
    port, controller = free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "server.properties"
    config.write_text(
        "process.roles=broker,controller\n"
        "node.id=1\n"
        f"controller.quorum.voters=1@{LOOPBACK}:{controller}\n"
        f"listeners=PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller}\n"
        f"advertised.listeners=PLAINTEXT://{LOOPBACK}:{port}\n"
        "controller.listener.names=CONTROLLER\n"
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
        f"log.dirs={workdir / 'data'}\n"
        "offsets.topic.replication.factor=1\n"
        "transaction.state.log.replication.factor=1\n"
        "transaction.state.log.min.isr=1\n"
        "num.partitions=1\n"
        "group.initial.rebalance.delay.ms=0\n"
    )
    (workdir / "log4j.properties").write_text(LOG4J)
    cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    jvm = [java, "-Xmx384m", "-Dlog4j.configuration=file:log4j.properties", "-cp", f"{libs}/*"]
    storage = ["kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", cluster]
    script = (
        f"{shlex.join([*jvm, *storage, '-c', str(config)])}"
        f" && exec {shlex.join([*jvm, 'kafka.Kafka', str(config)])}"
    )
    return Server(
        "kafka",
        ["sh", "-c", script],
        port,
        workdir,
        lambda s: tcp_open(s.port),
        startup_timeout=180,
    )
