"""log_target = syslog: every process writes RFC 3164 datagrams to
syslog_socket with Postfix's program names (petrel/smtpd, petrel/qmgr,
petrel/virtual, petrel/smtp, ...), and pflogsumm (Debian's package, run with
--syslog-name=petrel) counts a mixed load right: received, delivered,
deferred, bounced, rejected, and the bytes."""

import os
import re
import socket
import subprocess
import threading
import time

import pytest

from mx_util import ALICE, BOB, add_relay_domain, wait_for
from harness.instance import TIMEOUT_SCALE

PFLOGSUMM = "/usr/sbin/pflogsumm"
DGRAM = re.compile(r"^<(\d+)>(\w{3} [ \d]\d \d\d:\d\d:\d\d) ([^\[\]: ]+)\[(\d+)\]: (.*)$", re.S)


class SyslogSink:
    """A syslog daemon's socket: each datagram checked for RFC 3164 form and
    kept as the line a syslog daemon would write (with a host name)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.lines, self.bad = [], []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            text = data.decode("utf-8", "replace")
            m = DGRAM.match(text)
            with self.lock:
                if not m or "\n" in m.group(5):
                    self.bad.append(text)
                else:
                    self.lines.append((int(m.group(1)), m.group(3), "%s mailhost %s[%s]: %s"
                                       % (m.group(2), m.group(3), m.group(4), m.group(5))))

    def matching(self, pattern):
        rx = re.compile(pattern)
        with self.lock:
            return [l for _, _, l in self.lines if rx.search(l)]

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def sink(tmp_path):
    s = SyslogSink(str(tmp_path / "log.sock"))
    yield s
    s.stop()


def grand_totals(text):
    """The counts of pflogsumm's "Grand Totals" section."""
    assert "Grand Totals" in text, text
    text = text.split("Grand Totals", 1)[1].split("Per-", 1)[0]
    out = {}
    for m in re.finditer(r"^\s+(\d+)([km]?)\s+(received|delivered|forwarded|deferred|bounced|"
                         r"rejected|bytes received|bytes delivered)\b", text, re.M):
        assert m.group(2) == "", text
        out[m.group(3)] = int(m.group(1))
    return out


def send(srv, rcpts, subject, sender="someone@example.org"):
    body = b"Subject: %s\r\n\r\nhello\r\n" % subject.encode()
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<%s>" % sender, 250)
        for r in rcpts:
            c.expect("RCPT TO:<%s>" % r, 250)
        c.expect("DATA", 354)
        c.send(body + b".\r\n")
        assert c.reply().code == 250
        c.expect("QUIT", 221)
    return len(body.replace(b"\r\n", b"\n"))   # size= counts the stored (LF) form


def reject(srv, rcpt):
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<someone@example.org>", 250)
        assert c.cmd("RCPT TO:<%s>" % rcpt).code == 550
        c.expect("QUIT", 221)


def test_pflogsumm_counts_a_mixed_load(out_instance, petrel_start, fake_mx, sink, tmp_path):
    inst = out_instance
    assert os.path.exists(PFLOGSUMM), "pflogsumm is not installed (scripts/install-deps.sh --test)"
    mx = fake_mx(rcpt={"gone@bounce.test": "550 5.1.1 no such user"})
    add_relay_domain(inst, "bounce.test", mx.port)
    inst.run("alias", "add", "fwd@example.test", "later@nowhere.test")
    srv = petrel_start(inst, ("log_target=syslog", "syslog_socket=" + sink.path,
                              "queue_retry_min=3600"))
    size = 0
    size += send(srv, [ALICE], "one")                         # 1 received, 1 delivered
    size += send(srv, [ALICE, BOB], "two")                    # 1 received, 2 delivered
    size += send(srv, ["fwd@example.test"], "three")          # 1 received, deferred (port 9)
    size += send(srv, ["gone@bounce.test"], "four", sender=ALICE)  # bounced; the DSN to alice
    reject(srv, "nobody@example.test")
    reject(srv, "nobody2@example.test")
    wait = 30 * TIMEOUT_SCALE
    assert wait_for(lambda: sink.matching(r"petrel/smtp\[\d+\]: \w+: to=<gone@bounce\.test>, "
                                          r"relay=[^,]+, delay=\d+, status=bounced"), wait), \
        sink.lines
    assert wait_for(lambda: sink.matching(r"petrel/smtp\[\d+\]: \w+: to=<later@nowhere\.test>, "
                                          r"relay=[^,]+, delay=\d+, status=deferred"), wait), \
        sink.lines
    # the bounce notification reaches alice's mailbox
    assert wait_for(lambda: len(sink.matching(r"petrel/virtual\[\d+\]: \w+: to=<alice@example\.test>"))
                    == 3, wait), sink.lines
    srv.stop()
    assert not sink.bad, sink.bad[:5]
    with sink.lock:
        progs = {p for _, p, _ in sink.lines}
        prios = {pri for pri, _, _ in sink.lines}
    for p in ("petrel/smtpd", "petrel/qmgr", "petrel/virtual", "petrel/smtp", "petrel/master",
              "petrel/auth"):
        assert p in progs, (p, progs)
    assert all(pri >> 3 == 2 for pri in prios), prios      # facility mail
    assert 2 * 8 + 6 in prios                             # info
    log = tmp_path / "maillog"
    with sink.lock:
        log.write_text("".join(l + "\n" for _, _, l in sink.lines))
    cp = subprocess.run([PFLOGSUMM, "--syslog-name=petrel", str(log)], capture_output=True,
                        text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    t = grand_totals(cp.stdout)
    # received: the four messages from SMTP (the bounce notification is
    # made inside, as Postfix's own bounces are)
    assert t["received"] == 4, cp.stdout
    # delivered: alice, alice+bob, and the notification to alice
    assert t["delivered"] == 4, cp.stdout
    assert t["deferred"] == 1 and t["bounced"] == 1, cp.stdout
    assert t["rejected"] == 2, cp.stdout
    assert t["bytes received"] == size, (size, cp.stdout)


def test_unreachable_syslog_socket_is_refused(out_instance, tmp_path):
    cp = out_instance.run("-o", "log_target=syslog", "-o",
                          "syslog_socket=" + str(tmp_path / "nothing-here"), "serve", check=False)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert "syslog_socket" in cp.stderr and "nothing-here" in cp.stderr, cp.stderr
    assert cp.stderr.count("\n") == 1, cp.stderr
