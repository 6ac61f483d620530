"""Debian's rsyslog on free loopback ports (one plain TCP input, one TLS input), writing every
message it parses to a file as ``hostname|app-name|msgid|facility|severity|msg`` lines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from portway.deploy.lab_ca import LabCertificates
from tests.support.servers import LOOPBACK, Server, free_port, missing_capability, tcp_open

FIELDS = "%hostname%|%app-name%|%msgid%|%syslogfacility-text%|%syslogseverity-text%|%msg%\\n"


class Rsyslog:
    def __init__(self, workdir: Path, certs: LabCertificates) -> None:
        binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        if not Path(binary).exists():
            missing_capability("rsyslogd is not installed (scripts/apt-packages.txt: rsyslog)")
        self.tcp_port, self.tls_port = free_port(), free_port()
        self.out = workdir / "received.log"
        conf = workdir / "rsyslog.conf"
        conf.write_text(
            f'global(workDirectory="{workdir}"\n'
            f'  DefaultNetstreamDriverCAFile="{certs.ca_file}"\n'
            f'  DefaultNetstreamDriverCertFile="{certs.cert_file}"\n'
            f'  DefaultNetstreamDriverKeyFile="{certs.key_file}")\n'
            'module(load="imtcp")\n'
            f'template(name="fields" type="string" string="{FIELDS}")\n'
            f'input(type="imtcp" address="{LOOPBACK}" port="{self.tcp_port}" ruleset="out")\n'
            f'input(type="imtcp" address="{LOOPBACK}" port="{self.tls_port}" ruleset="out"\n'
            '  streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")\n'
            f'ruleset(name="out") {{ action(type="omfile" file="{self.out}" template="fields"\n'
            '  flushOnTXEnd="on") }\n'
        )
        argv = [binary, "-n", "-f", str(conf), "-i", str(workdir / "rsyslog.pid")]
        self.server = Server(
            "rsyslog",
            argv,
            self.tcp_port,
            workdir,
            lambda s: tcp_open(self.tcp_port) and tcp_open(self.tls_port),
            startup_timeout=20,
        )

    def lines(self) -> list[list[str]]:
        if not self.out.exists():
            return []
        return [line.split("|", 5) for line in self.out.read_text().splitlines()]

    def ids(self) -> list[str]:
        return [json.loads(fields[5])["id"] for fields in self.lines()]
