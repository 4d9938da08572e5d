"""DMARC failure reports (RFC 7489 7.3, RFC 6591 AFRF over RFC 5965 ARF):
`dmarc_failure_reports`.

A local DNS server (dns_util.LocalDNS, Unbound) publishes DMARC records with
ruf= pointing at dmarc@rep.mxtest (a mailbox of this instance, in another
organizational domain, so each policy domain that may report there also has
its `POLICY._report._dmarc.rep.mxtest` record, 7.1) and SPF records that
make a message from 127.0.0.2 fail or pass. The report reaches that
mailbox through petrel's own delivery path and is parsed with Python's email
package: multipart/report; report-type=feedback-report with a text part,
the message/feedback-report fields (Feedback-Type: auth-failure,
Auth-Failure: dmarc, Authentication-Results, Original-Mail-From, Source-IP,
Reported-Domain, Identity-Alignment, Delivery-Result) and the original
header section only (text/rfc822-headers, no body).

Also: fo=0 (the default) reports only a DMARC failure, fo=1 a pass with one
mechanism unaligned too, fo=d a failed signature only, fo=s an SPF failure
(Auth-Failure: spf); the setting off (the default) sends nothing; a
second failure of the same domain from the same IP within the hour is not
reported, one from another IP is; a ruf address whose domain does not
publish the authorization record gets nothing; the !3k size limit is kept
by cutting the header part; p=reject under enforce reports
Delivery-Result: reject.
"""

import email
import email.policy
import re
import time

import pytest

import dns_util
import smtp_util
from mx_util import ALICE, WAIT, wait_for
from smtp_util import read_new

# a mailbox of this instance in a domain of its own: Unbound (libunbound
# too) keeps .test to itself (RFC 6761), so the authorization records of
# 7.1 live under mxtest like the rest
BOB = "dmarc@rep.mxtest"
RUF = "mailto:" + BOB


def auth(dom):
    return '%s._report._dmarc.rep.mxtest. 300 IN TXT "v=DMARC1"' % dom


def spf(dom, ip):
    return '%s. 300 IN TXT "v=spf1 ip4:%s -all"' % (dom, ip)


def dmarc(dom, tags):
    return '_dmarc.%s. 300 IN TXT "v=DMARC1; %s"' % (dom, tags)


RECORDS = [
    # fails SPF (so DMARC, no DKIM); fo= not given (0)
    dmarc("fail0.mxtest", "p=none; ruf=" + RUF), spf("fail0.mxtest", "192.0.2.1"),
    auth("fail0.mxtest"),
    # passes by aligned SPF alone: fo=0 says nothing, fo=1 reports the DKIM
    dmarc("pass0.mxtest", "p=none; ruf=" + RUF), spf("pass0.mxtest", "127.0.0.2"),
    auth("pass0.mxtest"),
    dmarc("pass1.mxtest", "p=none; fo=1; ruf=" + RUF), spf("pass1.mxtest", "127.0.0.2"),
    auth("pass1.mxtest"),
    # no authorization record at rep.mxtest
    dmarc("noauth.mxtest", "p=none; ruf=" + RUF), spf("noauth.mxtest", "192.0.2.1"),
    # a size limit
    dmarc("small.mxtest", "p=none; ruf=%s!3k" % RUF), spf("small.mxtest", "192.0.2.1"),
    auth("small.mxtest"),
    # fo=d and fo=s alone, both failing SPF without a DKIM signature
    dmarc("dfo.mxtest", "p=none; fo=d; ruf=" + RUF), spf("dfo.mxtest", "192.0.2.1"),
    auth("dfo.mxtest"),
    dmarc("sfo.mxtest", "p=none; fo=s; ruf=" + RUF), spf("sfo.mxtest", "192.0.2.1"),
    auth("sfo.mxtest"),
    # refused under enforce
    dmarc("rej.mxtest", "p=reject; ruf=" + RUF), spf("rej.mxtest", "192.0.2.1"),
    auth("rej.mxtest"),
]


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    d = dns_util.LocalDNS(tmp_path_factory.mktemp("ruf"), RECORDS)
    yield d
    d.stop()


def start(inst, petrel_start, dns, *opts):
    """One worker: one report thread, which takes the messages' tasks in the
    order their data ended; once a later message's report is in, an earlier
    one's would be too, and a test need not wait for a report that is not
    to come."""
    inst.run("domain", "add", "rep.mxtest")
    inst.add_user(BOB, "pw")
    return petrel_start(inst, ("dns_resolver=" + dns.resolver, "spf_policy=mark",
                               "dmarc_policy=mark", "dmarc_report_from=ruf@example.test",
                               "workers=1") + opts)


def send(srv, dom, subject, source="127.0.0.2", extra=""):
    """One message from source, From and MAIL FROM in dom; the final reply."""
    msg = ("From: <x@%s>\r\nTo: <%s>\r\nSubject: %s\r\n%s"
           "Date: Mon, 07 Dec 2026 05:00:00 +0000\r\n"
           "Message-ID: <%s@client.test>\r\n\r\nsecret body text\r\n"
           % (dom, ALICE, subject, extra, subject.replace(" ", "."))).encode()
    with smtp_util.Client(srv.host, srv.port, source=source) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@%s>" % dom, 250)
        c.expect("RCPT TO:<%s>" % ALICE, 250)
        c.expect("DATA", 354)
        c.send(smtp_util.dot_stuff(msg) + b".\r\n")
        r = c.reply()
        c.expect("QUIT", 221)
    return r


def reports(inst):
    return [email.message_from_bytes(d, policy=email.policy.default)
            for d in read_new(inst, BOB)]


def wait_reports(inst, n, srv):
    got = wait_for(lambda: len(reports(inst)) >= n and reports(inst))
    assert got and len(got) >= n, "%d report(s), %d wanted\n%s" % (len(got or []), n,
                                                                   srv.log())
    return got


def fields(part):
    """The message/feedback-report part's fields as a Message."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0]
    return email.message_from_string(payload.lstrip("\r\n"), policy=email.policy.default)


def parts(rep):
    assert rep.get_content_type() == "multipart/report", rep
    assert rep.get_param("report-type") == "feedback-report"
    p = rep.get_payload()
    assert [x.get_content_type() for x in p] == [
        "text/plain", "message/feedback-report", "text/rfc822-headers"], p
    return p[0], fields(p[1]), p[2]


def about(rep):
    return fields(rep.get_payload()[1])["Reported-Domain"]


def test_failure_report_parts_and_rate_limit(out_instance, petrel_start, dns):
    inst = out_instance
    srv = start(inst, petrel_start, dns, "dmarc_failure_reports=yes")
    assert send(srv, "fail0.mxtest", "fails once").code == 250
    rep = wait_reports(inst, 1, srv)[0]
    assert rep["From"] == "<ruf@example.test>" or "ruf@example.test" in rep["From"]
    assert BOB in rep["To"]
    text, f, hdrs = parts(rep)
    assert "fail0.mxtest" in text.get_content()
    assert f["Feedback-Type"] == "auth-failure"
    assert f["Auth-Failure"] == "dmarc"
    assert f["Version"] == "1"
    assert f["Source-IP"] == "127.0.0.2"
    assert f["Reported-Domain"] == "fail0.mxtest"
    assert f["Original-Mail-From"] == "<x@fail0.mxtest>"
    assert re.fullmatch(r"[0-9A-Fa-f]+", f["Original-Envelope-Id"]), f["Original-Envelope-Id"]
    assert f["Identity-Alignment"] == "none"
    assert f["Delivery-Result"] == "delivered"
    ar = str(f["Authentication-Results"])
    assert "dmarc=fail" in ar and "spf=fail" in ar and "header.from=fail0.mxtest" in ar, ar
    # the header section, not the body
    h = hdrs.get_payload(decode=True).decode() if not isinstance(hdrs.get_payload(), str) \
        else hdrs.get_payload()
    assert "Subject: fails once" in h and "Message-ID: <fails.once@client.test>" in h, h
    assert "secret body text" not in rep.as_string()
    assert srv.wait_log(r"dmarc failure report about fail0\.mxtest from 127\.0\.0\.2 "
                        r"\(dmarc\) queued as \w+ to <dmarc@rep\.mxtest>")

    # the same domain and IP within the hour: not sent; another IP: sent
    assert send(srv, "fail0.mxtest", "fails twice").code == 250
    assert srv.wait_log(r"dmarc failure report about fail0\.mxtest from 127\.0\.0\.2: "
                        r"one went within the hour; not sent", timeout=WAIT), srv.log()
    assert send(srv, "fail0.mxtest", "other ip", source="127.0.0.3").code == 250
    got = wait_reports(inst, 2, srv)
    assert len(got) == 2, [g["Subject"] for g in got]
    assert fields(got[1].get_payload()[1])["Source-IP"] == "127.0.0.3"


def test_fo0_and_fo1(out_instance, petrel_start, dns):
    inst = out_instance
    srv = start(inst, petrel_start, dns, "dmarc_failure_reports=yes")
    # both pass DMARC by SPF alone; DKIM gave no aligned pass
    assert send(srv, "pass0.mxtest", "pass fo0").code == 250
    assert send(srv, "pass1.mxtest", "pass fo1").code == 250
    # reports go in order: once fo1's is in, fo0's would have been too
    got = wait_reports(inst, 1, srv)
    assert [about(r) for r in got] == ["pass1.mxtest"], [about(r) for r in got]
    _, f, _ = parts(got[0])
    assert f["Identity-Alignment"] == "spf" and f["Auth-Failure"] == "dmarc"
    assert "dmarc=pass" in str(f["Authentication-Results"])


def test_fo_d_and_fo_s(out_instance, petrel_start, dns):
    inst = out_instance
    srv = start(inst, petrel_start, dns, "dmarc_failure_reports=yes")
    # fo=d: no signature failed (there is none), so no report although
    # DMARC failed; fo=s: SPF failed, reported as an SPF failure
    assert send(srv, "dfo.mxtest", "fo d").code == 250
    assert send(srv, "sfo.mxtest", "fo s").code == 250
    got = wait_reports(inst, 1, srv)
    assert [about(r) for r in got] == ["sfo.mxtest"], [about(r) for r in got]
    _, f, _ = parts(got[0])
    assert f["Auth-Failure"] == "spf" and f["Identity-Alignment"] == "none"


def test_off_by_default(out_instance, petrel_start, dns):
    inst = out_instance
    srv = start(inst, petrel_start, dns)
    assert send(srv, "fail0.mxtest", "off").code == 250
    assert srv.wait_log(r"dmarc=fail .*header\.from=fail0\.mxtest")
    time.sleep(1.5)
    assert reports(inst) == []
    assert not srv.wait_log(r"dmarc failure report", timeout=0)


def test_ruf_of_another_domain_needs_its_authorization(out_instance, petrel_start, dns):
    inst = out_instance
    srv = start(inst, petrel_start, dns, "dmarc_failure_reports=yes")
    assert send(srv, "noauth.mxtest", "no auth").code == 250
    assert send(srv, "fail0.mxtest", "with auth").code == 250
    got = wait_reports(inst, 1, srv)
    assert [about(r) for r in got] == ["fail0.mxtest"]
    assert srv.wait_log(r"dmarc failure report about noauth\.mxtest: ruf dmarc@rep\.mxtest: "
                        r"no DMARC record at noauth\.mxtest\._report\._dmarc\.rep\.mxtest; "
                        r"skipped", timeout=0), srv.log()


def test_size_limit_cuts_the_headers(out_instance, petrel_start, dns):
    inst = out_instance
    srv = start(inst, petrel_start, dns, "dmarc_failure_reports=yes")
    filler = "".join("X-Filler-%02d: %s\r\n" % (i, "y" * 70) for i in range(60))
    assert send(srv, "small.mxtest", "big headers", extra=filler).code == 250
    rep = wait_reports(inst, 1, srv)[0]
    line = srv.wait_log(r"dmarc failure report about small\.mxtest .* (\d+) octets")
    size = int(re.search(r"(\d+) octets", line[-1]).group(1))
    assert size <= 3 * 1024, size
    _, f, hdrs = parts(rep)
    h = hdrs.get_payload() if isinstance(hdrs.get_payload(), str) else \
        hdrs.get_payload(decode=True).decode()
    # whole fields from the top, as many as fit; not all of them
    assert "From: <x@small.mxtest>" in h and "X-Filler-00:" in h, h
    assert "X-Filler-59:" not in h, h
    # the last field is whole
    last = h.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(r"X-Filler-\d\d: y{70}", last), last


def test_reject_under_enforce(out_instance, petrel_start, dns):
    inst = out_instance
    srv = start(inst, petrel_start, dns, "dmarc_failure_reports=yes", "dmarc_policy=enforce")
    r = send(srv, "rej.mxtest", "refused")
    assert r.code == 550, r
    rep = wait_reports(inst, 1, srv)[0]
    _, f, _ = parts(rep)
    assert f["Reported-Domain"] == "rej.mxtest" and f["Delivery-Result"] == "reject"
