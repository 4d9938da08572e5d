"""Outbound delivery through the queue manager: a FakeMX (mx_util) plays the
remote MX behind `smtp:[127.0.0.1]:PORT` transports (or relayhost).

Delivery (byte-exact, envelope, with and without PIPELINING / STARTTLS),
4xx then `petrel queue flush`, 5xx bounces (RFC 3464 DSN into the sender's
INBOX), per-recipient results, a restart with a full queue, expiry
(queue_lifetime), no bounce to the null sender, and the queue CLI.
SQLite only: the directory backend does not matter here."""

import json
import os
import re
import time

import pytest

from mx_util import (ALICE, BOB, HOSTNAME, PASSWORD, WAIT, add_relay_domain, dsn_parts,
                     free_port, instance_cert, make_message, parse_stored, queue_ids,
                     queue_json, wait_for, wait_queue_empty, wire)
from smtp_util import all_delivered, maildir_of, queue_files, read_new

SETTLE = 1.3   # > 1 queue scan (queue_scan_interval=1): time for a wrong retry to show


def header_block(data):
    """The header section of CRLF message bytes."""
    return data.split(b"\r\n\r\n", 1)[0]


def fields(data, name):
    """Values of header field `name` (unfolded) in CRLF message bytes."""
    out = []
    rx = rb"(?mi)^" + re.escape(name.encode()) + rb":([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)"
    for m in re.finditer(rx, header_block(data)):
        out.append(" ".join(m.group(1).decode("utf-8", "replace").split()))
    return out


def dsns(inst, address=ALICE):
    """The messages in address's new/ (bounces): [(raw bytes, Message)]."""
    return [(data, parse_stored(data)) for data in read_new(inst, address)]


def wait_dsns(inst, count=1, address=ALICE, timeout=WAIT):
    return wait_for(lambda: len(read_new(inst, address)) >= count and dsns(inst, address),
                    timeout) or dsns(inst, address)


def check_dsn(raw, msg, failed, sender=ALICE):
    """Common RFC 3464 checks; `failed`: {recipient: (status regex, diagnostic needle)}.
    Returns the rfc822-headers text."""
    assert raw.startswith(b"Return-Path: <>\n"), "a bounce has the null sender\n%r" % raw[:300]
    assert "MAILER-DAEMON@" + HOSTNAME in msg["From"], msg["From"]
    assert sender in msg["To"], msg["To"]
    assert msg["Subject"], "a bounce has a Subject"
    assert msg["Date"] and msg["Message-ID"], "Date and Message-ID in a bounce"
    per_msg, per_rcpt, headers = dsn_parts(msg)
    assert per_msg.get("Reporting-MTA", "").replace(" ", "") == "dns;" + HOSTNAME, per_msg
    got = {}
    for r in per_rcpt:
        fr = r.get("final-recipient", "")
        assert fr.lower().startswith("rfc822;"), r
        got[fr.split(";", 1)[1].strip().lower()] = r
    assert sorted(got) == sorted(failed), "DSN names %r, expected %r" % (sorted(got),
                                                                         sorted(failed))
    for rcpt, (status, needle) in failed.items():
        r = got[rcpt]
        assert r.get("action") == "failed", r
        assert re.match(status + r"$", r.get("status", "")), (status, r)
        assert needle in r.get("diagnostic-code", ""), (needle, r)
    return headers


def log_status(srv, rcpt, status):
    rx = r": to=<%s>, relay=.*status=%s" % (re.escape(rcpt), status)
    return [l for l in srv.log_lines() if re.search(rx, l)]


# --------------------------------------------------------------------------
# delivery


BODY = (b"First line\r\n"
        b".a line that starts with a dot\r\n"
        b".\r\n"
        b"..\r\n"
        b"...three\r\n"
        b"\r\n"
        b"From the start of a line\r\n"
        b"trailing white space   \t\r\n"
        b"\ttab-indented\r\n"
        b" space-indented\r\n"
        + "Grüße, naïve café — ✓\r\n".encode()
        + b"x" * 990 + b"\r\n"
        + b"CR.LF.CR.LF text .\r\n"
        b"\r\n"
        b"\r\n")


@pytest.mark.parametrize("features", ["pipelining", "plain", "starttls",
                                      "starttls+pipelining"])
def test_delivery_byte_exact(out_instance, petrel_start, fake_mx, features):
    inst = out_instance
    mx = fake_mx(pipelining="pipelining" in features, starttls="starttls" in features,
                 cert=instance_cert(inst))
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst)
    original = make_message("byte-exact " + features, BODY, to="x@relay.test",
                            extra=b"Message-ID: <byte-exact@client.test>\r\n"
                                  b"Date: Mon, 02 Jan 2023 10:00:00 +0000\r\n"
                                  b"X-Folded: first part\r\n\tsecond part\r\n")
    r = srv.submit(ALICE, ALICE, ["x@relay.test", "Y@Relay.Test"], wire(original))
    assert r.code == 250, r
    got = mx.wait_messages(1)
    assert len(got) == 1, "the fake MX got %r\nlog:\n%s" % (mx, srv.log())
    t = got[0]
    assert t.mail_from == ALICE
    assert sorted(a.lower() for a in t.rcpts) == ["x@relay.test", "y@relay.test"], t
    assert t.refused == []
    assert t.helo == HOSTNAME, t.helo
    assert t.tls == ("starttls" in features), "opportunistic STARTTLS when offered: %r" % t
    assert mx.violations == [], mx.violations
    assert mx.errors == [], mx.errors
    # the message as sent, after the trace fields petrel puts in front
    assert t.data.endswith(original), "not byte-exact:\n%r" % t.data[-600:]
    prefix = t.data[:-len(original)]
    assert prefix.startswith(b"Received: "), prefix[:300]
    assert re.match(rb"^(?:(?:Received|DKIM-Signature):[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)+$",
                    prefix), "only trace fields may be added in front:\n%r" % prefix
    assert b"\n" not in t.data.replace(b"\r\n", b""), "bare LF on the wire"
    # one transaction for both recipients of one transport, then the queue is empty
    assert wait_queue_empty(inst), inst.run("queue", "list").stdout
    assert len(mx.transactions) == 1, mx.transactions
    lines = srv.wait_log(r"status=sent", count=2)
    assert len(lines) == 2, srv.log()
    assert all("relay=127.0.0.1[127.0.0.1]:%d" % mx.port in l for l in lines), lines
    assert all("attempts=1" in l for l in lines), lines


def test_delivery_large_message(out_instance, petrel_start, fake_mx):
    """1.5 MB through the queue (spooled to disk, sent in many writes)."""
    inst = out_instance
    mx = fake_mx(pipelining=True)
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst)
    body = b"".join(b"%06d .%s\r\n" % (i, b"y" * 64) for i in range(20000))
    body = body.replace(b"000100 .", b".000100")  # a stuffed line in the middle
    original = make_message("large", body)
    assert srv.submit(ALICE, ALICE, ["big@relay.test"], wire(original)).code == 250
    got = mx.wait_messages(1, timeout=40)
    assert len(got) == 1, srv.log()
    assert got[0].data.endswith(original), "large message altered"
    assert wait_queue_empty(inst)


def test_unauthenticated_mail_to_a_relay_domain(out_instance, petrel_start, fake_mx):
    """The MX port relays to a domain of the transport table (relay_domains), and
    adds no Message-ID/Date there (submission only); envelope from <x@y.test>."""
    inst = out_instance
    mx = fake_mx()
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst)
    original = make_message("via mx port", b"hello\r\n", sender="x@y.test")
    with srv.mx() as c:
        r = c.send_message("x@y.test", ["someone@relay.test"], wire(original), ehlo="client.test")
        assert r.code == 250, r
    got = mx.wait_messages(1)
    assert len(got) == 1, srv.log()
    assert got[0].mail_from == "x@y.test"
    assert got[0].data.endswith(original)
    assert fields(got[0].data, "Message-ID") == [] and fields(got[0].data, "Date") == []
    assert "with ESMTPSA" not in fields(got[0].data, "Received")[0]


# --------------------------------------------------------------------------
# 4xx: deferred, then `petrel queue flush`


TEMP_FAILURES = {   # stage -> (FakeMX arguments, the 4xx that must show as the last reply)
    "rcpt": (dict(rcpt=["451 4.3.0 try again later", None]), "451 4.3.0"),
    "eod": (dict(eod=["452 4.3.1 insufficient system storage", None]), "452 4.3.1"),
    "greeting": (dict(greeting="421 4.3.2 fake-mx.test busy, come back later"), "421 4.3.2"),
}


def test_4xx_deferred_then_flush(out_instance, petrel_start, fake_mx):
    """A 4xx at RCPT, at the end of DATA, or in the greeting (one remote MX
    each): deferred with back-off, nothing bounced; `petrel queue flush` makes
    them due and each is delivered exactly once."""
    inst = out_instance
    mxs = {}
    for stage, (kw, _) in TEMP_FAILURES.items():
        mxs[stage] = fake_mx(**kw)
        add_relay_domain(inst, stage + ".test", mxs[stage].port)
    # a long back-off: only the flush may bring the retry
    srv = petrel_start(inst, ["queue_retry_min=3600"])
    originals = {}
    for stage in TEMP_FAILURES:
        originals[stage] = make_message("deferred at " + stage, to="x@%s.test" % stage)
        r = srv.submit(ALICE, ALICE, ["x@%s.test" % stage], wire(originals[stage]))
        assert r.code == 250, r
    n = len(TEMP_FAILURES)
    assert len(srv.wait_log(r"status=deferred", count=n)) == n, srv.log()
    q = {m["recipients"][0]["address"]: m for m in queue_json(inst)}
    assert sorted(q) == sorted("x@%s.test" % st for st in TEMP_FAILURES), q
    for stage, (_, want) in TEMP_FAILURES.items():
        m = q["x@%s.test" % stage]
        assert m["sender"] == ALICE and len(m["recipients"]) == 1, m
        rc = m["recipients"][0]
        assert rc["status"] in ("pending", "deferred"), rc
        assert rc["attempts"] == 1, rc
        assert want in rc["last"], (stage, rc)
        assert rc["next"] > time.time() + 1800, "queue_retry_min=3600 back-off: %r" % rc
        assert mxs[stage].messages() == [], stage
    assert read_new(inst, ALICE) == [], "a 4xx must not bounce"
    # no retry before it is due
    mxs["greeting"].greeting = "220 fake-mx.test ESMTP ready"
    time.sleep(SETTLE)
    for stage, mx in mxs.items():
        assert mx.messages() == [], "%s: retried before the back-off was over" % stage
    cp = inst.run("queue", "flush")
    assert "flush" in cp.stdout.lower(), cp.stdout
    for stage, mx in mxs.items():
        got = mx.wait_messages(1)
        assert len(got) == 1, "%s: nothing delivered after the flush\nlog:\n%s" % (stage,
                                                                                      srv.log())
        assert got[0].data.endswith(originals[stage]), stage
        assert srv.wait_log(r"to=<x@%s\.test>.*status=sent.*attempts=2" % stage), srv.log()
    assert wait_queue_empty(inst), inst.run("queue", "list").stdout
    time.sleep(SETTLE)
    for stage, mx in mxs.items():
        assert len(mx.messages()) == 1, "%s: delivered twice: %r" % (stage, mx.transactions)
    assert read_new(inst, ALICE) == []


def test_flush_makes_every_deferred_message_due(out_instance, petrel_start, fake_mx):
    """More deferred messages than the queue may attempt at once (12 domains
    x 4 messages whose next hop refused the connection, queue_concurrency=20,
    queue_destination_concurrency=5): once the MX is up, one `petrel queue
    flush` brings every one of them, not only those the first scan after it
    had room to start (the back-off is an hour); each is delivered once."""
    inst = out_instance
    port = free_port()
    doms = ["f%d.test" % k for k in range(12)]
    for d in doms:
        add_relay_domain(inst, d, port)
    srv = petrel_start(inst, ["queue_retry_min=3600", "queue_concurrency=20",
                              "queue_destination_concurrency=5"])
    rcpts = ["m%d@%s" % (i, d) for i in range(4) for d in doms]
    for rc in rcpts:
        r = srv.submit(ALICE, ALICE, [rc], wire(make_message("flush " + rc, to=rc)))
        assert r.code == 250, r
    assert len(srv.wait_log(r"status=deferred \(connect to", count=len(rcpts))) >= len(rcpts), \
        srv.log()
    time.sleep(SETTLE)      # the queue manager has read every deferred one again
    mx = fake_mx(port=port)
    inst.run("queue", "flush")
    got = mx.wait_messages(len(rcpts))
    assert sorted(r for t in got for r in t.rcpts) == sorted(rcpts), (
        "after one flush: %r\nlog:\n%s" % ([t.rcpts for t in got], srv.log()))
    assert wait_queue_empty(inst), inst.run("queue", "list").stdout
    time.sleep(SETTLE)
    assert len(mx.messages()) == len(rcpts), [t.rcpts for t in mx.messages()]


def test_backoff_doubles_and_is_capped(out_instance, petrel_start, fake_mx):
    """queue_retry_min doubled per attempt, capped by queue_retry_max (each
    attempt forced by a flush)."""
    inst = out_instance
    mx = fake_mx(rcpt="451 4.2.0 busy")
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst, ["queue_retry_min=1000", "queue_retry_max=3000"])
    assert srv.submit(ALICE, ALICE, ["x@relay.test"], wire(make_message("backoff"))).code == 250
    waits = []
    for attempt in range(1, 5):
        if attempt > 1:
            inst.run("queue", "flush")
        lines = srv.wait_log(r"status=deferred.*attempts=%d" % attempt)
        assert lines, "attempt %d\nlog:\n%s" % (attempt, srv.log())
        rc = wait_for(lambda: [r for m in queue_json(inst) for r in m["recipients"]
                               if r["attempts"] == attempt], 5)
        assert rc, queue_json(inst)
        waits.append(rc[0]["next"] - time.time())
    expected = [1000, 2000, 3000, 3000]
    for got, want in zip(waits, expected):
        assert want - 60 <= got <= want + 1, "back-off %r, expected about %r" % (waits, expected)
    assert mx.messages() == [] and read_new(inst, ALICE) == []


def test_flush_by_root_keeps_the_state(mail_user_instance, petrel_start, fake_mx):
    """A real installation: the server runs as `mail`, the administrator runs
    `petrel queue flush` as root. One recipient was delivered, one deferred:
    after the flush the deferred one goes out, the delivered one is not sent
    again, and the attempt count goes on."""
    inst = mail_user_instance
    mx = fake_mx(rcpt={"later@relay.test": ["451 4.2.1 mailbox busy", None]})
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst, ["queue_retry_min=3600"])
    original = make_message("flushed by root", to="ok@relay.test, later@relay.test")
    r = srv.submit(ALICE, ALICE, ["ok@relay.test", "later@relay.test"], wire(original))
    assert r.code == 250
    assert srv.wait_log(r"to=<later@relay\.test>.*status=deferred.*attempts=1"), srv.log()
    assert [t.rcpts for t in mx.messages()] == [["ok@relay.test"]]
    inst.run("queue", "flush")        # as root
    assert srv.wait_log(r"to=<later@relay\.test>.*status=sent"), srv.log()
    assert wait_queue_empty(inst)
    time.sleep(SETTLE)
    rcpts = [t.rcpts for t in mx.messages()]
    assert rcpts == [["ok@relay.test"], ["later@relay.test"]], (
        "ok@relay.test delivered twice after a root flush: %r\nlog:\n%s" % (rcpts, srv.log()))
    assert srv.wait_log(r"to=<later@relay\.test>.*status=sent.*attempts=2", timeout=0), \
        "the attempt count was lost:\n" + srv.log()


# --------------------------------------------------------------------------
# 5xx: a bounce (RFC 3464) into the sender's INBOX


PERM_FAILURES = {   # stage -> (FakeMX arguments, Status regex, Diagnostic-Code needle)
    "rcpt": (dict(rcpt="550 5.1.1 <x@rcpt.test>: Recipient address rejected: no such user"),
             r"5\.1\.1", "550 5.1.1 <x@rcpt.test>: Recipient address rejected"),
    "eod": (dict(eod="554 5.7.1 Message rejected as spam"), r"5\.7\.1", "554 5.7.1"),
    "mail": (dict(mail="553 5.1.8 Sender address rejected: domain not found"),
             r"5\.1\.8", "553 5.1.8"),
    "greeting": (dict(greeting="554 5.3.2 fake-mx.test does not accept mail"),
                 r"5\.\d+\.\d+", "554"),
}


def test_5xx_bounces_into_the_senders_inbox(out_instance, petrel_start, fake_mx):
    """A 5xx at RCPT, at the end of DATA, to MAIL or in the greeting (one remote
    MX each): bounced at once, one RFC 3464 report each in alice's INBOX."""
    inst = out_instance
    mxs = {}
    for stage, (kw, _, _) in PERM_FAILURES.items():
        mxs[stage] = fake_mx(**kw)
        add_relay_domain(inst, stage + ".test", mxs[stage].port)
    srv = petrel_start(inst, ["queue_retry_min=3600"])
    for stage in PERM_FAILURES:
        original = make_message("will bounce at " + stage, b"body of the bounced message\r\n",
                                to="x@%s.test" % stage,
                                extra=b"Message-ID: <bounce-me-%s@client.test>\r\n"
                                      % stage.encode())
        assert srv.submit(ALICE, ALICE, ["x@%s.test" % stage], wire(original)).code == 250
    n = len(PERM_FAILURES)
    got = wait_dsns(inst, count=n)
    assert len(got) == n, "%d bounces in alice's INBOX, expected %d\nlog:\n%s" % (
        len(got), n, srv.log())
    seen = set()
    for raw, msg in got:
        _, per_rcpt, _ = dsn_parts(msg)
        (rcpt,) = [r["final-recipient"].split(";", 1)[1].strip() for r in per_rcpt]
        stage = rcpt.split("@")[1][:-len(".test")]
        _, status, needle = PERM_FAILURES[stage]
        headers = check_dsn(raw, msg, {rcpt: (status, needle)})
        assert "Subject: will bounce at " + stage in headers, headers
        assert "<bounce-me-%s@client.test>" % stage in headers, headers
        assert "body of the bounced message" not in headers, "headers only"
        seen.add(stage)
    assert seen == set(PERM_FAILURES), seen
    assert wait_queue_empty(inst), inst.run("queue", "list").stdout
    for stage, mx in mxs.items():
        assert mx.messages() == [], stage
        assert srv.wait_log(r"to=<x@%s\.test>.*status=bounced" % stage), srv.log()
    # bounced at once: one attempt each, no retry, one bounce each
    time.sleep(SETTLE)
    assert len(read_new(inst, ALICE)) == n
    for stage in PERM_FAILURES:
        tries = srv.wait_log(r"to=<x@%s\.test>, relay=" % stage, count=2, timeout=0)
        assert len(tries) == 1, tries


def maildirsize_usage(path):
    """[bytes, count] summed over a maildirsize file's delta lines."""
    with open(path) as f:
        lines = f.read().splitlines()
    total = [0, 0]
    for line in lines[1:]:
        b, c = line.split()
        total[0] += int(b)
        total[1] += int(c)
    return total


def stored_usage(inst, address):
    """[bytes, count] of the files in address's new/ and cur/."""
    md = maildir_of(inst, address)
    paths = [os.path.join(md, sub, n) for sub in ("new", "cur")
             for n in os.listdir(os.path.join(md, sub)) if not n.startswith(".")]
    return [sum(os.path.getsize(p) for p in paths), len(paths)]


def test_bounce_to_a_local_sender_counts_in_its_quota(out_instance, petrel_start, fake_mx):
    """A bounce delivered into the maildir of a sender with a quota is added to
    its maildirsize (Maildir++) like any delivery: afterwards maildirsize says
    what new/ holds, the bounce included."""
    inst = out_instance
    user = "carol@example.test"
    inst.add_user(user, PASSWORD, "--quota", "10000000")
    mx = fake_mx(rcpt="550 5.1.1 <x@quota.test>: Recipient address rejected: no such user")
    add_relay_domain(inst, "quota.test", mx.port)
    srv = petrel_start(inst, ["queue_retry_min=3600"])
    msize = os.path.join(maildir_of(inst, user), "maildirsize")
    # A first message to carol: its RCPT-time quota check writes maildirsize.
    with srv.mx() as c:
        r = c.send_message(BOB, [user], wire(make_message("hello", sender=BOB, to=user)),
                           ehlo="client.test")
        assert r.code == 250, r
    assert os.path.exists(msize), "delivery to a user with a quota keeps maildirsize"
    before = stored_usage(inst, user)
    assert before[1] == 1 and maildirsize_usage(msize) == before
    original = make_message("will bounce", sender=user, to="x@quota.test")
    assert srv.submit(user, user, ["x@quota.test"], wire(original)).code == 250
    got = wait_dsns(inst, count=2, address=user)
    bounces = [raw for raw, _ in got if raw.startswith(b"Return-Path: <>\n")]
    assert len(got) == 2 and len(bounces) == 1, "one bounce for carol\nlog:\n%s" % srv.log()
    after = [before[0] + len(bounces[0]), 2]
    assert stored_usage(inst, user) == after
    # maildirsize is appended right after the copy is linked into new/
    assert wait_for(lambda: maildirsize_usage(msize) == after), (
        "maildirsize %r, stored %r\n%s" % (maildirsize_usage(msize), after, open(msize).read()))
    assert srv.wait_log(r"sender non-delivery notification"), srv.log()


def test_per_recipient_results(out_instance, petrel_start, fake_mx):
    """One message, one 250 and one 550: one sent, one bounced, one DSN naming
    only the failed recipient."""
    inst = out_instance
    mx = fake_mx(rcpt={"bad@relay.test": "550 5.1.1 <bad@relay.test>: no such user"})
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst, ["queue_retry_min=3600"])
    original = make_message("mixed results", to="ok@relay.test, bad@relay.test")
    r = srv.submit(ALICE, ALICE, ["ok@relay.test", "bad@relay.test"], wire(original))
    assert r.code == 250
    got = mx.wait_messages(1)
    assert len(got) == 1, srv.log()
    assert got[0].rcpts == ["ok@relay.test"], got[0]
    assert [a for a, _ in got[0].refused] == ["bad@relay.test"]
    assert got[0].data.endswith(original)
    bounces = wait_dsns(inst)
    assert len(bounces) == 1, srv.log()
    check_dsn(*bounces[0], {"bad@relay.test": (r"5\.1\.1", "550 5.1.1")})
    assert b"ok@relay.test" not in bounces[0][0].split(b"text/rfc822-headers")[0], \
        "the DSN must not name the delivered recipient before the quoted headers"
    assert wait_queue_empty(inst)
    assert log_status(srv, "ok@relay.test", "sent"), srv.log()
    assert log_status(srv, "bad@relay.test", "bounced"), srv.log()
    time.sleep(SETTLE)
    assert len(mx.messages()) == 1 and len(read_new(inst, ALICE)) == 1


def test_bounce_is_not_held_back_by_a_deferred_recipient(out_instance, petrel_start, fake_mx):
    """250 / 451 / 550 for three recipients of one message: the sender learns
    about the failed one now (as Postfix and Exim do), not when the deferred one
    is finally done (which may be queue_lifetime = days later)."""
    inst = out_instance
    mx = fake_mx(rcpt={"later@relay.test": ["451 4.2.1 mailbox busy", None],
                       "bad@relay.test": "550 5.1.1 <bad@relay.test>: no such user"})
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst, ["queue_retry_min=3600"])
    rcpts = ["ok@relay.test", "later@relay.test", "bad@relay.test"]
    original = make_message("three results", to=", ".join(rcpts))
    assert srv.submit(ALICE, ALICE, rcpts, wire(original)).code == 250
    assert len(mx.wait_messages(1)) == 1, srv.log()
    assert srv.wait_log(r"to=<later@relay\.test>.*status=deferred"), srv.log()
    bounces = wait_dsns(inst, timeout=5)
    try:
        assert len(bounces) == 1, ("no bounce for bad@relay.test while later@relay.test is "
                                   "deferred\nqueue:\n%s\nlog:\n%s"
                                   % (inst.run("queue", "list").stdout, srv.log()))
        check_dsn(*bounces[0], {"bad@relay.test": (r"5\.1\.1", "550 5.1.1")})
        # the deferred one is still queued, alone
        (m,) = queue_json(inst)
        pending = [r["address"] for r in m["recipients"] if r["status"] in ("pending", "deferred")]
        assert pending == ["later@relay.test"], m
    finally:
        # either way: after a flush the deferred one is delivered and the
        # failed one is reported exactly once
        inst.run("queue", "flush")
        assert len(mx.wait_messages(2)) == 2, srv.log()
        assert wait_queue_empty(inst)
    final = wait_dsns(inst)
    assert len(final) == 1, "exactly one bounce in the end"
    check_dsn(*final[0], {"bad@relay.test": (r"5\.1\.1", "550 5.1.1")})


# --------------------------------------------------------------------------
# restart with a full queue


def test_restart_loses_nothing(out_instance, petrel_start, fake_mx):
    inst = out_instance
    port = free_port()  # the receiver is down at first: connection refused
    add_relay_domain(inst, "relay.test", port)
    srv = petrel_start(inst, ["queue_retry_min=3600"])
    sent = {
        "restart-1": ["a@relay.test"],
        "restart-2": ["b@relay.test", "c@relay.test"],
        "restart-3": ["d@relay.test"],
    }
    for subject, rcpts in sent.items():
        data = wire(make_message(subject, b"body of " + subject.encode() + b"\r\n"))
        assert srv.submit(ALICE, ALICE, rcpts, data).code == 250
    with srv.mx() as c:   # and one from the MX port (a relay domain)
        data = wire(make_message("restart-4", b"body of restart-4\r\n", sender="x@y.test"))
        assert c.send_message("x@y.test", ["e@relay.test"], data, ehlo="client.test").code == 250
    sent["restart-4"] = ["e@relay.test"]
    nrcpt = sum(len(v) for v in sent.values())
    assert len(srv.wait_log(r"status=deferred", count=nrcpt)) == nrcpt, srv.log()
    before = queue_ids(inst)
    assert len(before) == 4, before
    assert srv.stop() == 0, srv.log()
    assert queue_ids(inst) == before, "the queue changed while stopping"

    srv2 = petrel_start(inst, ["queue_retry_min=3600"])
    mx = fake_mx(port=port)
    time.sleep(SETTLE)
    assert mx.messages() == [], "retried before its time (queue_retry_min=3600)"
    inst.run("queue", "flush")
    got = mx.wait_messages(4)
    assert len(got) == 4, "after restart and flush: %r\nlog:\n%s" % (got, srv2.log())
    assert wait_queue_empty(inst), inst.run("queue", "list").stdout
    time.sleep(SETTLE)
    got = mx.messages()
    subjects = sorted(t.message()["Subject"] for t in got)
    assert subjects == sorted(sent), "each message exactly once: %r" % subjects
    for t in got:
        subject = t.message()["Subject"]
        assert sorted(t.rcpts) == sorted(sent[subject]), t
        assert t.data.endswith(b"\r\n\r\nbody of " + subject.encode() + b"\r\n"), t.data[-200:]
    assert queue_json(inst) == []
    assert all_delivered(inst) == [], "no bounce, nothing local"


# --------------------------------------------------------------------------
# expiry


def test_expired_message_bounces(out_instance, petrel_start, fake_mx):
    """queue_lifetime=1: one recipient answered 451, one whose MX refuses the
    connection; both expire and one bounce names both."""
    inst = out_instance
    mx = fake_mx(rcpt="451 4.2.0 mailbox temporarily unavailable")
    add_relay_domain(inst, "relay.test", mx.port)
    add_relay_domain(inst, "down.test", free_port())
    srv = petrel_start(inst, ["queue_lifetime=1"])
    original = make_message("will expire", to="x@relay.test, y@down.test")
    r = srv.submit(ALICE, ALICE, ["x@relay.test", "y@down.test"], wire(original))
    assert r.code == 250
    got = wait_dsns(inst)
    assert len(got) == 1, "no bounce after queue_lifetime=1\nlog:\n%s" % srv.log()
    raw, msg = got[0]
    headers = check_dsn(raw, msg, {"x@relay.test": (r"[45]\.\d{1,3}\.\d{1,3}", "451"),
                                   "y@down.test": (r"[45]\.\d{1,3}\.\d{1,3}", "")})
    assert "Subject: will expire" in headers
    assert wait_queue_empty(inst)
    assert mx.messages() == []
    assert len(mx.transactions) >= 1, "x@relay.test was tried"
    time.sleep(SETTLE)
    assert len(read_new(inst, ALICE)) == 1, "one bounce only"


# --------------------------------------------------------------------------
# never a bounce to the null sender


def test_no_bounce_for_a_null_sender(out_instance, petrel_start, fake_mx):
    inst = out_instance
    mx = fake_mx(rcpt="550 5.1.1 no such user")
    add_relay_domain(inst, "relay.test", mx.port)
    inst.run("alias", "add", "fwd@example.test", "gone@relay.test")
    srv = petrel_start(inst, ["queue_retry_min=3600"])
    with srv.mx() as c:
        data = wire(b"From: <>\r\nSubject: a bounce of ours\r\n\r\nreport\r\n")
        assert c.send_message("", ["gone@relay.test"], data, ehlo="client.test").code == 250
        data = wire(b"Subject: via an alias\r\n\r\nreport\r\n")
        assert c.send_message("", ["fwd@example.test"], data).code == 250
    assert len(mx.wait_transactions(2)) == 2, srv.log()
    assert wait_queue_empty(inst), inst.run("queue", "list").stdout
    time.sleep(SETTLE)
    assert all_delivered(inst) == [], "a bounce was delivered somewhere"
    assert queue_files(inst) == [], "a bounce was queued"
    assert len(mx.transactions) == 2 and mx.connections == 2, mx.transactions
    assert all(t.mail_from == "" for t in mx.transactions)
    assert len(srv.wait_log(r"status=bounced", count=2, timeout=0)) == 2, srv.log()


def test_bounce_to_a_remote_sender_and_no_double_bounce(out_instance, petrel_start, fake_mx):
    """A forwarded message from a remote sender fails: the bounce goes out
    (relayhost) with the null sender; when that bounce fails too, nothing more."""
    inst = out_instance
    mx = fake_mx(rcpt="550 5.1.1 no such user")
    world = fake_mx(rcpt="550 5.1.1 sender unknown here either")  # the relayhost
    add_relay_domain(inst, "relay.test", mx.port)
    inst.run("alias", "add", "fwd@example.test", "gone@relay.test")
    srv = petrel_start(inst, ["relayhost=[127.0.0.1]:%d" % world.port])
    with srv.mx() as c:
        data = wire(make_message("to be forwarded", sender="someone@far.test",
                                 to="fwd@example.test"))
        assert c.send_message("someone@far.test", ["fwd@example.test"], data,
                              ehlo="client.test").code == 250
    got = world.wait_transactions(1)
    assert len(got) == 1, "the bounce did not go out\nlog:\n%s" % srv.log()
    t = got[0]
    assert t.mail_from == "", "a bounce has the null sender: %r" % t
    assert [a for a, _ in t.refused] == ["someone@far.test"]
    assert wait_queue_empty(inst), inst.run("queue", "list").stdout
    time.sleep(SETTLE)
    assert len(world.transactions) == 1 and len(mx.transactions) == 1
    assert all_delivered(inst) == [] and queue_files(inst) == []


# --------------------------------------------------------------------------
# petrel queue list / show / delete / flush


def test_queue_list_show_delete(out_instance, petrel_start):
    inst = out_instance
    # relayhost [127.0.0.1]:9 is closed: the mail stays deferred
    srv = petrel_start(inst, ["queue_retry_min=3600"])
    original = make_message("queued for the cli", b"line one\r\n.dotted\r\n",
                            to="x@other.test")
    assert srv.submit(ALICE, ALICE, ["x@other.test", "y@other.test"], wire(original)).code == 250
    other = make_message("second", b"2\r\n", sender=BOB)
    assert srv.submit(BOB, BOB, ["z@third.test"], wire(other)).code == 250
    assert len(srv.wait_log(r"status=deferred", count=3)) == 3, srv.log()

    q = queue_json(inst)
    assert len(q) == 2, q
    by_sender = {m["sender"]: m for m in q}
    m = by_sender[ALICE]
    assert re.match(r"^[0-9A-F]{16}$", m["id"]), m
    assert abs(m["arrival"] - time.time()) < 120, m
    assert m["size"] >= len(original), m
    assert [r["address"] for r in m["recipients"]] == ["x@other.test", "y@other.test"]
    for r in m["recipients"]:
        assert r["status"] in ("pending", "deferred") and r["attempts"] == 1, r
        assert r["last"], "the last error is shown: %r" % r
        assert r["next"] > time.time() + 1800, r
        assert "transport" in r
    assert sorted(queue_ids(inst)) == sorted(x["id"] for x in q)

    rows = [l.split("\t") for l in inst.run("queue", "list").stdout.splitlines() if l.strip()]
    assert len(rows) == 3, rows
    mine = [r for r in rows if r[0] == m["id"]]
    assert [r[4] for r in mine] == ["x@other.test", "y@other.test"], rows
    for r in mine:
        assert len(r) >= 8, r
        assert r[1] == str(m["arrival"]) and r[2] == str(m["size"]) and r[3] == ALICE, r
        assert r[5] in ("pending", "deferred") and r[6] == "1", r

    cp = inst.run("queue", "show", m["id"])
    assert m["id"] in cp.stdout and "x@other.test" in cp.stdout
    assert "Subject: queued for the cli" in cp.stdout
    assert "\n.dotted\n" in cp.stdout.replace("\r\n", "\n"), "show prints the message unstuffed"

    # delete: gone from the list and the disk; the other stays
    cp = inst.run("queue", "delete", m["id"])
    assert m["id"] in cp.stdout
    assert [x["id"] for x in queue_json(inst)] == [by_sender[BOB]["id"]]
    assert queue_ids(inst) == [by_sender[BOB]["id"]]
    for bad in (m["id"], "0123456789ABCDEF", "../../petrel.conf", "nonsense", ""):
        cp = inst.run("queue", "delete", bad, check=False)
        assert cp.returncode == 1, (bad, cp.returncode, cp.stdout, cp.stderr)
        assert cp.stderr.startswith("petrel: "), cp.stderr
        cp = inst.run("queue", "show", bad, check=False)
        assert cp.returncode == 1, (bad, cp.returncode, cp.stdout, cp.stderr)
    assert os.path.exists(inst.conf)
    assert queue_ids(inst) == [by_sender[BOB]["id"]]
    # flush with the manager running; the relayhost is still down
    cp = inst.run("queue", "flush")
    assert "flush" in cp.stdout.lower(), cp.stdout
    assert srv.wait_log(r"to=<z@third\.test>.*status=deferred.*attempts=2"), srv.log()
    assert read_new(inst, ALICE) == [] and read_new(inst, BOB) == []


def test_queue_cli_without_server(out_instance):
    inst = out_instance
    assert queue_json(inst) == []
    assert inst.run("queue", "list").stdout.strip() == ""
    cp = inst.run("queue", "flush")
    assert cp.returncode == 0
    assert json.loads(inst.run("queue", "list", "--json").stdout) == []


# --------------------------------------------------------------------------
# SMTP smuggling towards the next hop

SMUGGLED_BODY = (
    b"Line one\r\n"
    b"cr\r.\rMAIL FROM:<evil@evil.test>\rRCPT TO:<victim@relay.test>\rDATA\r"
    b"Subject: smuggled cr\r\rcr body\r.\r\n"
    b"lf\n.\nMAIL FROM:<evil@evil.test>\nRCPT TO:<victim@relay.test>\nDATA\n"
    b"Subject: smuggled lf\n\nlf body\n.\r\n"
    b"mixed\n.\r\nMAIL FROM:<evil@evil.test>\r\n"
    b"end\r\n")
# What the next hop must receive: only CRLF line ends, every line that starts
# with a dot stuffed (before the final dot line).
SMUGGLED_WIRE = (
    b"Line one\r\n"
    b"cr\r\n..\r\nMAIL FROM:<evil@evil.test>\r\nRCPT TO:<victim@relay.test>\r\nDATA\r\n"
    b"Subject: smuggled cr\r\n\r\ncr body\r\n..\r\n"
    b"lf\r\n..\r\nMAIL FROM:<evil@evil.test>\r\nRCPT TO:<victim@relay.test>\r\nDATA\r\n"
    b"Subject: smuggled lf\r\n\r\nlf body\r\n..\r\n"
    b"mixed\r\n..\r\nMAIL FROM:<evil@evil.test>\r\n"
    b"end\r\n"
    b".\r\n")


@pytest.mark.parametrize("path", ["forwarding-alias", "submission", "submission-bdat"])
def test_no_smuggling_to_the_next_hop(out_instance, petrel_start, fake_mx, path):
    """Bare CR and bare LF dot sequences (\\r.\\r, \\r.\\r\\n, \\n.\\n, \\n.\\r\\n) in a
    message relayed to another server: a next hop that takes a bare CR or LF
    for a line end (this fake MX does) still sees exactly one message, and the
    bytes it receives contain no bare CR or LF at all."""
    inst = out_instance
    mx = fake_mx(any_line_end=True)
    add_relay_domain(inst, "relay.test", mx.port)
    inst.run("alias", "add", "fwd@example.test", "dest@relay.test")
    srv = petrel_start(inst)
    head = (b"From: <x@y.test>\r\nTo: <dest@relay.test>\r\nSubject: outer\r\n"
            b"Message-ID: <smuggle@client.test>\r\nDate: Mon, 02 Jan 2023 10:00:00 +0000\r\n"
            b"\r\n")
    original = head + SMUGGLED_BODY
    if path == "forwarding-alias":
        with srv.mx() as c:
            r = c.send_message("x@y.test", ["fwd@example.test"], original, ehlo="client.test")
    elif path == "submission":
        r = srv.submit(ALICE, ALICE, ["dest@relay.test"], original)
    else:
        with srv.sub() as c:
            c.login(ALICE, PASSWORD)
            c.expect("MAIL FROM:<%s>" % ALICE, 250)
            c.expect("RCPT TO:<dest@relay.test>", 250)
            c.send(b"BDAT %d LAST\r\n" % len(original) + original)
            r = c.reply()
    assert r.code == 250, r
    # the queue is empty only after the MX's reply to the data, which
    # comes after the transaction is recorded: nothing more can follow
    assert wait_queue_empty(inst), inst.run("queue", "list").stdout
    assert len(mx.transactions) == 1, mx.transactions
    assert mx.violations == [] and mx.errors == [], (mx.violations, mx.errors)
    t = mx.transactions[0]
    assert [a.lower() for a in t.rcpts] == ["dest@relay.test"], t
    assert "victim" not in " ".join(c for _, c in mx.commands), mx.commands
    raw = t.raw
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b""), \
        "a bare CR or LF on the wire: %r" % raw
    assert raw.endswith(b"Subject: outer\r\nMessage-ID: <smuggle@client.test>\r\n"
                        b"Date: Mon, 02 Jan 2023 10:00:00 +0000\r\n\r\n" + SMUGGLED_WIRE), raw
