"""Helpers for the SMTP integration tests (test_smtp*.py).

- SmtpServer / start_smtp(): `petrel serve` (harness.server) with only the SMTP
  listener on a free loopback port; log(), wait_log(), crashes(), stop().
- Client (harness.conn.SmtpConn): a raw-socket SMTP client that reads whole
  (multi-line) replies, for the byte-level tests smtplib cannot express
  (smuggling, pipelining, BDAT, garbage).
- Maildir / queue helpers: files in new/ and tmp/, splitting the three headers
  petrel prepends (Return-Path, Delivered-To, Received) from the stored message.
"""

import os
import re

from harness import server
from harness.conn import Reply, SmtpConn as Client  # noqa: F401
from harness.maildir import (all_delivered, listdir, maildir_of, queue_dir,  # noqa: F401
                             queue_files, split_stored)
from harness.ports import free_port  # noqa: F401
from harness.server import START_TIMEOUT, STOP_TIMEOUT  # noqa: F401

HOSTNAME = "mx.petrel.test"
# Outbound mail stays in the queue during these tests: the queue manager
# relays through a closed loopback port (connection refused -> deferred)
# instead of looking up MX records. Queue-delivery tests override it.
DEFAULTS = ("hostname=" + HOSTNAME, "relayhost=[127.0.0.1]:9", "queue_retry_min=3600")


class SmtpServer(server.Server):
    """A running `petrel serve` (SMTP listener only, unless a subclass adds more)."""

    def client(self, timeout=15, greeting=True):
        return Client(self.host, self.port, timeout=timeout, greeting=greeting)

    def smtplib(self, timeout=30):
        import smtplib
        return smtplib.SMTP(self.host, self.port, local_hostname="client.test", timeout=timeout)


def start_smtp(inst, opts=(), timeout=START_TIMEOUT):
    """Start `petrel serve` for inst on a free port; wait (bounded) until a client
    gets the 220 greeting (harness.server.start)."""
    return server.start(inst, ("smtp",), DEFAULTS + tuple(opts), cls=SmtpServer,
                        timeout=timeout)


def dot_stuff(data):
    """Wire form of a message body (CRLF line ends, leading dots doubled)."""
    out = re.sub(rb"(?m)^\.", b"..", data)
    return out


# --------------------------------------------------------------------------
# mailboxes and the queue


def new_files(inst, address):
    d = os.path.join(maildir_of(inst, address), "new")
    return [os.path.join(d, n) for n in listdir(d)]


def tmp_files(inst, address):
    d = os.path.join(maildir_of(inst, address), "tmp")
    return [os.path.join(d, n) for n in listdir(d)]


def read_new(inst, address):
    """Contents of every file in address's new/, sorted by name (arrival)."""
    out = []
    for p in new_files(inst, address):
        with open(p, "rb") as f:
            out.append(f.read())
    return out


def lf(data):
    return data.replace(b"\r\n", b"\n")
