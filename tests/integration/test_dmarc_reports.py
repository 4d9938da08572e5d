"""DMARC aggregate reports (RFC 7489 7.2, Appendix C): `dmarc_reports`,
`dmarc_report_from` and `petrel dmarc report [--dry-run]`.

A local DNS server (dns_util.LocalDNS, Unbound) publishes DMARC records with
rua= addresses and the SPF records that make a message from 127.0.0.2 pass
or fail. Messages that pass, fail under p=reject (refused with 550 and still
recorded as disposition reject) and fail under p=quarantine (stored in Junk)
leave rows in queue_dir/state.db; `petrel dmarc report` then queues one
report per policy domain, which the queue relays to a FakeMX (relayhost).
The report is read back as the remote receiver would: the MIME attachment
with RFC 7489's file name, gunzipped and parsed with xml.etree; its
policy_published values, records, counts and dispositions are checked, and
so are the removal of the rows (a second run sends nothing), the report not
sent to a rua address of another domain that does not publish its
authorization record (7.1), the one sent to a domain that does, and a
server with the setting off recording nothing.
"""

import email
import email.policy
import gzip
import os
import re
import sqlite3
import time
import xml.etree.ElementTree as ET

import pytest

import dns_util
import smtp_util
from harness.maildir import queue_dir
from mx_util import ALICE, HOSTNAME, WAIT, wait_for
from smtp_util import queue_files

CLIENT = "127.0.0.2"
REPORT_FROM = "dmarc-reports@example.test"

RECORDS = [
    # reports to its own domain; strict DKIM alignment; sp= not given
    '_dmarc.good.mxtest. 300 IN TXT "v=DMARC1; p=reject; adkim=s; pct=100; '
    'rua=mailto:dmarc@good.mxtest"',
    'good.mxtest. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"',
    'bad.mxtest. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"',
    # reports to another domain that accepts them (7.1), with a size limit
    '_dmarc.quar.mxtest. 300 IN TXT "v=DMARC1; p=quarantine; sp=none; aspf=s; '
    'rua=mailto:agg@reports.mxtest!10m"',
    'quar.mxtest._report._dmarc.reports.mxtest. 300 IN TXT "v=DMARC1"',
    # reports to another domain that does not say it accepts them
    '_dmarc.ext.mxtest. 300 IN TXT "v=DMARC1; p=none; rua=mailto:agg@unauth.mxtest"',
    'unauth.mxtest. 300 IN A 192.0.2.9',
    # no rua=: nothing recorded
    '_dmarc.norua.mxtest. 300 IN TXT "v=DMARC1; p=none"',
]


@pytest.fixture
def dns(tmp_path):
    d = dns_util.LocalDNS(tmp_path, RECORDS)
    yield d
    d.stop()


def message(frm, subject):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
            "Date: Mon, 07 Dec 2026 05:00:00 +0000\r\n"
            "Message-ID: <%s@client.test>\r\n\r\nbody\r\n"
            % (frm, ALICE, subject, subject.replace(" ", "."))).encode()


def send(srv, mail_from, frm, subject):
    """One message from CLIENT to alice; the final reply's code."""
    with smtp_util.Client(srv.host, srv.port, source=CLIENT) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<%s>" % mail_from, 250)
        c.expect("RCPT TO:<%s>" % ALICE, 250)
        c.expect("DATA", 354)
        c.send(smtp_util.dot_stuff(message(frm, subject)) + b".\r\n")
        r = c.reply()
        c.expect("QUIT", 221)
    return r.code


def state_rows(inst):
    """The recorded rows (domain, disposition, header_from); [] when none."""
    path = os.path.join(queue_dir(inst), "state.db")
    if not os.path.exists(path):
        return []
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        return db.execute("SELECT domain, disposition, header_from FROM dmarc_report "
                          "ORDER BY id").fetchall()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []
        raise
    finally:
        db.close()


def run_report(inst, dns, *args, check=True):
    """petrel dmarc report with the server's settings (the CLI reads the
    file; the server got them with -o)."""
    return inst.run("-o", "dns_resolver=" + dns.resolver, "-o", "hostname=" + HOSTNAME,
                    "-o", "dmarc_report_from=" + REPORT_FROM, "dmarc", "report", *args,
                    check=check)


def report_of(t):
    """(message, attachment file name, feedback root) of a relayed report."""
    msg = email.message_from_bytes(t.data, policy=email.policy.default)
    parts = [p for p in msg.iter_attachments()]
    assert len(parts) == 1, t.data[:2000]
    att = parts[0]
    assert att.get_content_type() == "application/gzip", att.get_content_type()
    raw = gzip.decompress(att.get_content())
    return msg, att.get_filename(), ET.fromstring(raw)


def records(root):
    """{(source_ip, disposition, dkim, spf, header_from): (count, record)}"""
    out = {}
    for rec in root.findall("record"):
        row = rec.find("row")
        pe = row.find("policy_evaluated")
        key = (row.findtext("source_ip"), pe.findtext("disposition"), pe.findtext("dkim"),
               pe.findtext("spf"), rec.find("identifiers").findtext("header_from"))
        assert key not in out, key
        out[key] = (int(row.findtext("count")), rec)
    return out


def test_reports_are_recorded_sent_and_removed(out_instance, petrel_start, fake_mx, dns):
    inst = out_instance
    mx = fake_mx()
    srv = petrel_start(inst, ("dns_resolver=" + dns.resolver, "dmarc_policy=enforce",
                              "spf_policy=mark", "dkim_verify=yes", "dmarc_reports=yes",
                              "dmarc_report_from=" + REPORT_FROM,
                              "relayhost=[127.0.0.1]:%d" % mx.port))
    # two passes (aligned SPF), one p=reject failure (refused, still recorded)
    assert send(srv, "a@good.mxtest", "boss@good.mxtest", "pass one") == 250
    assert send(srv, "a@good.mxtest", "boss@good.mxtest", "pass two") == 250
    assert send(srv, "x@bad.mxtest", "boss@good.mxtest", "forged") == 550
    # p=quarantine, SPF fails -> Junk
    assert send(srv, "x@bad.mxtest", "q@quar.mxtest", "quarantined") == 250
    # p=none, rua at a domain that does not accept reports for ext.mxtest
    assert send(srv, "x@bad.mxtest", "e@ext.mxtest", "monitored") == 250
    # no rua=: no row
    assert send(srv, "x@bad.mxtest", "n@norua.mxtest", "no reports") == 250
    rows = wait_for(lambda: len(state_rows(inst)) >= 5 and state_rows(inst))
    assert sorted(rows) == sorted([
        ("good.mxtest", "none", "good.mxtest"), ("good.mxtest", "none", "good.mxtest"),
        ("good.mxtest", "reject", "good.mxtest"),
        ("quar.mxtest", "quarantine", "quar.mxtest"), ("ext.mxtest", "none", "ext.mxtest"),
    ]), rows
    assert srv.wait_log("dmarc-reject: END-OF-MESSAGE")

    # --dry-run: the XML, nothing sent or removed
    cp = run_report(inst, dns, "--dry-run")
    docs = re.findall(r"<\?xml.*?</feedback>\n", cp.stdout, re.S)
    assert len(docs) == 3, cp.stdout
    domains = sorted(ET.fromstring(d.split("\n", 1)[1]).findtext("policy_published/domain")
                     for d in docs)
    assert domains == ["ext.mxtest", "good.mxtest", "quar.mxtest"], domains
    assert len(state_rows(inst)) == 5
    # a report is sent through the queue: a file there until the MX has
    # it, so no file and no transaction means none was queued
    assert queue_files(inst) == [] and queue_files(inst, "tmp") == []
    assert mx.transactions == [], mx.transactions

    start = int(time.time())
    cp = run_report(inst, dns, check=False)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    assert re.search(r"^good\.mxtest: 3 messages, report \S+ queued as [0-9A-F]{16} to "
                     r"dmarc@good\.mxtest$", cp.stdout, re.M), cp.stdout
    assert re.search(r"^quar\.mxtest: 1 message, report \S+ queued as \S+ to "
                     r"agg@reports\.mxtest$", cp.stdout, re.M), cp.stdout
    assert re.search(r"^ext\.mxtest: 1 message, no address to send the report to: dropped$",
                     cp.stdout, re.M), cp.stdout
    assert "agg@unauth.mxtest" in cp.stderr and "ext.mxtest._report._dmarc.unauth.mxtest" \
        in cp.stderr, cp.stderr
    got = mx.wait_messages(2)
    assert len(got) == 2, (mx, srv.log())
    by_rcpt = {t.rcpts[0]: t for t in got}
    assert sorted(by_rcpt) == ["agg@reports.mxtest", "dmarc@good.mxtest"], by_rcpt
    assert all(len(t.rcpts) == 1 and t.mail_from == REPORT_FROM for t in got), got

    # good.mxtest's report
    msg, fname, root = report_of(by_rcpt["dmarc@good.mxtest"])
    m = re.fullmatch(r"example\.test!good\.mxtest!(\d+)!(\d+)\.xml\.gz", fname or "")
    assert m, fname
    begin, end = int(m.group(1)), int(m.group(2))
    assert begin <= end and start - 600 < begin and start <= end <= time.time() + 1
    rid = root.findtext("report_metadata/report_id")
    assert rid and msg["Subject"] == ("Report Domain: good.mxtest Submitter: example.test "
                                      "Report-ID: <%s>" % rid), msg["Subject"]
    assert [a.addr_spec for a in msg["From"].addresses] == [REPORT_FROM]
    assert [a.addr_spec for a in msg["To"].addresses] == ["dmarc@good.mxtest"]
    assert root.findtext("report_metadata/org_name") == "example.test"
    assert root.findtext("report_metadata/email") == REPORT_FROM
    assert int(root.findtext("report_metadata/date_range/begin")) == begin
    assert int(root.findtext("report_metadata/date_range/end")) == end
    pp = root.find("policy_published")
    assert {e.tag: e.text for e in pp} == {"domain": "good.mxtest", "adkim": "s", "aspf": "r",
                                          "p": "reject", "sp": "reject", "pct": "100"}
    recs = records(root)
    assert set(recs) == {(CLIENT, "none", "fail", "pass", "good.mxtest"),
                         (CLIENT, "reject", "fail", "fail", "good.mxtest")}, recs
    count, rec = recs[(CLIENT, "none", "fail", "pass", "good.mxtest")]
    assert count == 2
    assert rec.findtext("identifiers/envelope_from") == "good.mxtest"
    spf = rec.find("auth_results/spf")
    assert (spf.findtext("domain"), spf.findtext("scope"), spf.findtext("result")) == \
        ("good.mxtest", "mfrom", "pass")
    assert rec.find("auth_results/dkim") is None
    count, rec = recs[(CLIENT, "reject", "fail", "fail", "good.mxtest")]
    assert count == 1
    spf = rec.find("auth_results/spf")
    assert (spf.findtext("domain"), spf.findtext("result")) == ("bad.mxtest", "fail")

    # quar.mxtest's report, at the authorized external address
    msg, fname, root = report_of(by_rcpt["agg@reports.mxtest"])
    assert re.fullmatch(r"example\.test!quar\.mxtest!\d+!\d+\.xml\.gz", fname), fname
    assert msg["Subject"].startswith("Report Domain: quar.mxtest Submitter: example.test ")
    pp = root.find("policy_published")
    assert {e.tag: e.text for e in pp} == {"domain": "quar.mxtest", "adkim": "r", "aspf": "s",
                                          "p": "quarantine", "sp": "none", "pct": "100"}
    recs = records(root)
    assert list(recs) == [(CLIENT, "quarantine", "fail", "fail", "quar.mxtest")], recs
    assert recs[(CLIENT, "quarantine", "fail", "fail", "quar.mxtest")][0] == 1

    # the rows are gone: a second run sends nothing
    assert state_rows(inst) == []
    cp = run_report(inst, dns)
    assert cp.stdout == "no DMARC report to send\n", cp.stdout
    # nothing queued (a report is a queue file until the MX has it)
    assert queue_files(inst) == [] and queue_files(inst, "tmp") == []
    assert len(mx.transactions) == 2, mx.transactions


def test_report_by_root_for_a_server_account(mail_user_instance, petrel_start, fake_mx, dns):
    """Run as root (cron), the command works as the server's account: the
    state database's files and the queue file stay readable by it."""
    import pwd
    inst = mail_user_instance
    mail = pwd.getpwnam("mail").pw_uid
    mx = fake_mx()
    srv = petrel_start(inst, ("dns_resolver=" + dns.resolver, "dmarc_policy=enforce",
                              "dmarc_reports=yes", "relayhost=[127.0.0.1]:%d" % mx.port))
    assert send(srv, "a@good.mxtest", "boss@good.mxtest", "as mail") == 250
    assert wait_for(lambda: state_rows(inst))
    cp = run_report(inst, dns, "--dry-run")
    assert "<source_ip>127.0.0.2</source_ip>" in cp.stdout, cp.stdout
    cp = run_report(inst, dns)
    assert "good.mxtest: 1 message, report" in cp.stdout, (cp.stdout, cp.stderr)
    got = mx.wait_messages(1)
    assert [t.rcpts for t in got] == [["dmarc@good.mxtest"]], (mx, srv.log())
    qd = queue_dir(inst)
    owners = {n: os.stat(os.path.join(qd, n)).st_uid for n in os.listdir(qd)
              if n.startswith("state.db")}
    assert owners and set(owners.values()) == {mail}, owners
    # the server still records (its files were not taken from it)
    assert send(srv, "a@good.mxtest", "boss@good.mxtest", "again") == 250
    assert wait_for(lambda: state_rows(inst))


def test_nothing_recorded_when_off(out_instance, petrel_start, dns):
    inst = out_instance
    srv = petrel_start(inst, ("dns_resolver=" + dns.resolver, "dmarc_policy=enforce"))
    assert send(srv, "a@good.mxtest", "boss@good.mxtest", "not recorded") == 250
    assert send(srv, "x@bad.mxtest", "boss@good.mxtest", "forged") == 550
    assert srv.wait_log("dmarc=pass")
    srv.stop()      # the server's own rows would be written by now
    assert state_rows(inst) == []
    cp = inst.run("dmarc", "report")
    assert cp.stdout == "no DMARC report to send\n", cp.stdout


def test_errors_are_one_line(out_instance):
    cp = out_instance.run("dmarc", "report", "--bogus", check=False)
    assert cp.returncode == 1 and cp.stderr.count("\n") == 1, cp
    cp = out_instance.run("dmarc", "send", check=False)
    assert cp.returncode == 1 and cp.stderr.startswith("petrel: "), cp
    cp = out_instance.run("-o", "dmarc_report_from=not an address", "dmarc", "report",
                          check=False)
    assert cp.returncode == 1 and "dmarc_report_from" in cp.stderr, cp
