"""DNS block lists (`dnsbl_sites`, `dnsbl_threshold`, `dnsbl_timeout`) and
greylisting (`greylist`, `greylist_delay`, `greylist_expire`) at SMTP time,
against a real DNS server (Unbound from dns_util.LocalDNS on a free loopback
port, which petrel's libunbound reaches through `dns_resolver`).

Clients connect from 127.0.0.2..127.0.0.7 (their RFC 5782 names are
N.0.0.127.ZONE): petrel exempts only this host itself (127.0.0.1, ::1),
checked here too, and the submission ports (authenticated; no lookups).

Block lists: a listed client gets 554 5.7.1 at RCPT naming the lists; an
answer outside a site's filter does not count; weights add up against the
threshold, a negative weight (an allow list) cancels a listing; an unlisted
client passes; HELO/EHLO names in `rhsbl_helo_sites` are refused alone and
with the client's or the sender domain's weights, while address literals and
names that are not domain names are never asked (Unbound's query log); lookups that fail or do not answer count as not listed (fail
open, logged): a resolver on a closed port and one that never
answers (a UDP socket that reads nothing), the client held at RCPT only until
dnsbl_timeout. Greylisting: a new triplet gets 451 4.7.1, an
early retry too, a retry after greylist_delay passes, another recipient is
greylisted again, <> is greylisted by recipient, unknown recipients still
get 550, `greylist_whitelist` clients pass, and the state outlives a
restart of petrel serve.
"""

import os
import time

import pytest

import smtp_util
from dns_util import LocalDNS
from harness import server
from harness.instance import TIMEOUT_SCALE, add_users, make_instance
from harness.ports import free_ports

ALICE = "alice@example.test"
BOB = "bob@example.test"
Z = "dnsbltest"


def rev(ip):
    return ".".join(reversed(ip.split(".")))


RECORDS = [
    # .2: zen with an answer inside the filter (weight 2 = the threshold)
    "%s.zen.%s. 300 IN A 127.0.0.4" % (rev("127.0.0.2"), Z),
    # .3: zen outside the filter (127.0.0.12), half1 (1 < 2): passes
    "%s.zen.%s. 300 IN A 127.0.0.12" % (rev("127.0.0.3"), Z),
    "%s.half1.%s. 300 IN A 127.0.0.2" % (rev("127.0.0.3"), Z),
    # .4: half1 + half2 = 2: refused, both named
    "%s.half1.%s. 300 IN A 127.0.0.2" % (rev("127.0.0.4"), Z),
    "%s.half2.%s. 300 IN A 127.0.0.3" % (rev("127.0.0.4"), Z),
    # .5: zen (2) and the allow list (-2): passes
    "%s.zen.%s. 300 IN A 127.0.0.2" % (rev("127.0.0.5"), Z),
    "%s.wl.%s. 300 IN A 127.0.10.1" % (rev("127.0.0.5"), Z),
    # .1: listed, but this host itself is never checked
    "%s.zen.%s. 300 IN A 127.0.0.2" % (rev("127.0.0.1"), Z),
    # .7: listed everywhere: refused unless it authenticates
    "%s.zen.%s. 300 IN A 127.0.0.2" % (rev("127.0.0.7"), Z),
    # RHSBL: MAIL FROM domains
    "bad.example.rhs.%s. 300 IN A 127.0.0.2" % Z,
    "meh.example.rhs1.%s. 300 IN A 127.0.0.2" % Z,
    "ready.%s. 300 IN A 127.0.0.1" % Z,
    # RHSBL of HELO names (rhsbl_helo_sites)
    "badhelo.example.helo.%s. 300 IN A 127.0.0.2" % Z,
    "mehhelo.example.helo1.%s. 300 IN A 127.0.0.2" % Z,
    # a bare dotted quad, which is no domain name: listed, never asked
    "9.0.0.127.helo.%s. 300 IN A 127.0.0.2" % Z,
]

SITES = ("zen.{z}=127.0.0.[2..11]*2, half1.{z} half2.{z}*1,"
         "wl.{z}=127.0.[10;20..30].[0..255]*-2").format(z=Z)


@pytest.fixture(scope="module")
def env(petrel_bin, tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("dnsbl"))
    dns = LocalDNS(tmp, RECORDS, log_queries=True)
    insts = {}
    for name in ("lists", "deadns", "slow", "grey"):
        insts[name] = make_instance(petrel_bin, os.path.join(tmp, name), "sqlite")
        add_users(insts[name], (ALICE, BOB))
    dead = free_ports(1)[0]
    try:
        with server.running(smtp_util.start_smtp, insts["lists"],
                            ("dns_resolver=" + dns.resolver, "dnsbl_sites=" + SITES,
                             "dnsbl_threshold=2",
                             "rhsbl_sites=rhs.%s*2, rhs1.%s" % (Z, Z),
                             "rhsbl_helo_sites=helo.%s*2, helo1.%s" % (Z, Z),
                             "spf_policy=ignore")) as lists, \
            server.running(smtp_util.start_smtp, insts["deadns"],
                           ("dns_resolver=127.0.0.1:%d" % dead, "dnsbl_sites=zen." + Z,
                            "dnsbl_timeout=1", "spf_policy=ignore")) as deadns, \
            server.running(smtp_util.start_smtp, insts["slow"],
                           ("dns_resolver=127.0.0.1:%d" % dns.blackhole.getsockname()[1],
                            "dnsbl_sites=zen." + Z, "dnsbl_timeout=1",
                            "spf_policy=ignore")) as slow:
            yield {"lists": lists, "deadns": deadns, "slow": slow, "grey": insts["grey"],
                   "dns": dns}
    finally:
        dns.stop()


def rcpt(srv, source, rcpt=ALICE, sender="someone@sender.example", helo="client.test"):
    """EHLO, MAIL, one RCPT from source: the RCPT's reply."""
    with smtp_util.Client(srv.host, srv.port, source=source) as c:
        c.expect("EHLO " + helo, 250)
        c.expect("MAIL FROM:<%s>" % sender, 250)
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        c.expect("QUIT", 221)
    return r


def test_listed_client_refused_naming_the_list(env):
    r = rcpt(env["lists"], "127.0.0.2")
    assert r.code == 554 and "5.7.1" in r.text, r
    assert "Client host [127.0.0.2] blocked using zen.%s" % Z in r.text, r
    assert env["lists"].wait_log(r"reject: RCPT from \[127\.0\.0\.2\].*554 5\.7\.1.*zen\.%s" % Z)
    assert env["lists"].wait_log(r"dnsbl zen\.%s lists \[127\.0\.0\.2\] \(127\.0\.0\.4\), weight 2" % Z)


def test_weights_add_up_to_the_threshold(env):
    r = rcpt(env["lists"], "127.0.0.4")
    assert r.code == 554, r
    assert "half1.%s" % Z in r.text and "half2.%s" % Z in r.text, r


def test_answer_outside_filter_and_weight_under_threshold_pass(env):
    assert rcpt(env["lists"], "127.0.0.3").code == 250


def test_allow_list_cancels_a_listing(env):
    assert rcpt(env["lists"], "127.0.0.5").code == 250


def test_unlisted_client_passes(env):
    assert rcpt(env["lists"], "127.0.0.6").code == 250


def test_this_host_exempt(env):
    assert rcpt(env["lists"], "127.0.0.1").code == 250
    assert rcpt(env["lists"], "127.0.0.7").code == 554


def test_every_recipient_refused_pipelined(env):
    srv = env["lists"]
    with smtp_util.Client(srv.host, srv.port, source="127.0.0.2") as c:
        c.send("EHLO client.test\r\nMAIL FROM:<a@sender.example>\r\n"
               "RCPT TO:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\nQUIT\r\n" % (ALICE, BOB))
        replies = c.replies(6)
    assert [r.code for r in replies] == [250, 250, 554, 554, 554, 221], replies


def test_rhsbl_sender_domain(env):
    srv = env["lists"]
    r = rcpt(srv, "127.0.0.6", sender="x@bad.example")
    assert r.code == 554 and "5.7.1" in r.text, r
    assert "<x@bad.example>: Sender address rejected: bad.example blocked using rhs.%s" % Z \
        in r.text, r
    # weight 1 alone is under the threshold; with the client's 1 it is not
    assert rcpt(srv, "127.0.0.6", sender="x@meh.example").code == 250
    r = rcpt(srv, "127.0.0.3", sender="x@MEH.example")
    assert r.code == 554 and "rhs1.%s, half1.%s" % (Z, Z) in r.text, r
    # per transaction: the next sender starts afresh
    with smtp_util.Client(srv.host, srv.port, source="127.0.0.6") as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@bad.example>", 250)
        c.expect("RCPT TO:<%s>" % ALICE, 554)
        c.expect("RSET", 250)
        c.expect("MAIL FROM:<x@good.example>", 250)
        c.expect("RCPT TO:<%s>" % ALICE, 250)
        c.expect("MAIL FROM:<>", 503)
        c.expect("QUIT", 221)


def test_rhsbl_helo_name(env):
    srv = env["lists"]
    # listed with weight 2: refused at RCPT in Postfix's words for
    # reject_rhsbl_helo, naming the list
    r = rcpt(srv, "127.0.0.6", helo="BadHelo.example")
    assert r.code == 554 and "5.7.1" in r.text, r
    assert "<badhelo.example>: Helo command rejected: badhelo.example blocked " \
        "using helo.%s" % Z in r.text, r
    assert srv.wait_log(r"reject: RCPT from \[127\.0\.0\.6\].*Helo command rejected.*"
                        r"helo=<badhelo\.example>")
    # HELO (not EHLO) too
    with smtp_util.Client(srv.host, srv.port, source="127.0.0.6") as c:
        c.expect("HELO badhelo.example", 250)
        c.expect("MAIL FROM:<a@sender.example>", 250)
        c.expect("RCPT TO:<%s>" % ALICE, 554)
        # a new EHLO starts afresh
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<a@sender.example>", 250)
        c.expect("RCPT TO:<%s>" % ALICE, 250)
        c.expect("QUIT", 221)
    # unlisted name: accepted; weight 1 alone is under the threshold
    assert rcpt(srv, "127.0.0.6", helo="goodhelo.example").code == 250
    assert rcpt(srv, "127.0.0.6", helo="mehhelo.example").code == 250


def test_rhsbl_helo_weights_add_to_client_and_sender(env):
    srv = env["lists"]
    # helo1 (1) + the client's half1 (1) = 2: refused, both lists named
    r = rcpt(srv, "127.0.0.3", helo="mehhelo.example")
    assert r.code == 554, r
    assert "Helo command rejected: mehhelo.example blocked using helo1.%s, half1.%s" \
        % (Z, Z) in r.text, r
    # helo1 (1) + the sender domain's rhs1 (1) = 2: the sender made up the
    # difference, all lists named
    r = rcpt(srv, "127.0.0.6", helo="mehhelo.example", sender="x@meh.example")
    assert r.code == 554, r
    assert "Sender address rejected: meh.example blocked using rhs1.%s, helo1.%s" \
        % (Z, Z) in r.text, r
    # .5 scores zen 2 + the allow list's -2 = 0: with helo1's 1 still
    # under the threshold
    assert rcpt(srv, "127.0.0.5", helo="mehhelo.example").code == 250


def test_rhsbl_helo_address_literal_and_non_domains_not_asked(env):
    srv, dns = env["lists"], env["dns"]
    for helo in ("[127.0.0.9]", "[IPv6:::9]", "9.0.0.127", "localhost9", "bad_.-x.example"):
        assert rcpt(srv, "127.0.0.6", helo=helo).code == 250, helo
    # a listed name sent after them is asked (the log is being written)
    assert rcpt(srv, "127.0.0.6", helo="badhelo.example").code == 554
    deadline = time.monotonic() + 5
    while "badhelo.example.helo.%s" % Z not in dns.read_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = dns.read_log()
    assert "badhelo.example.helo.%s" % Z in log, log[-2000:]
    assert "9.0.0.127.helo" not in log and "127.0.0.9" not in log, log[-2000:]
    assert "localhost9" not in log and "bad_" not in log, log[-2000:]


def test_dead_resolver_fails_open(env):
    srv = env["deadns"]
    t0 = time.monotonic()
    assert rcpt(srv, "127.0.0.2").code == 250
    assert time.monotonic() - t0 < 10 * TIMEOUT_SCALE
    assert srv.wait_log(r"dnsbl zen\.%s: (lookup for \[127\.0\.0\.2\] failed|no answer for "
                 r"\[127\.0\.0\.2\]).*taken as not listed" % Z)


def test_resolver_that_never_answers_times_out(env):
    srv = env["slow"]
    t0 = time.monotonic()
    r = rcpt(srv, "127.0.0.2")
    took = time.monotonic() - t0
    # held at RCPT until dnsbl_timeout = 1 after connect, then not listed
    assert r.code == 250, r
    assert 0.8 < took < 8 * TIMEOUT_SCALE, took
    assert srv.wait_log(r"dnsbl zen\.%s: no answer for \[127\.0\.0\.2\] within 1000 ms: "
                        r"taken as not listed" % Z)


def test_held_session_pipelined_and_abandoned(env):
    srv = env["slow"]
    # pipelined commands behind a held RCPT are answered in order after it
    with smtp_util.Client(srv.host, srv.port, source="127.0.0.3") as c:
        c.send("EHLO client.test\r\nMAIL FROM:<a@sender.example>\r\n"
               "RCPT TO:<%s>\r\nRCPT TO:<%s>\r\nRSET\r\nQUIT\r\n" % (ALICE, BOB))
        assert [r.code for r in c.replies(6)] == [250, 250, 250, 250, 250, 221]
    # a client that leaves while held: the session ends when the wait does
    before = len(srv.wait_log(r"smtp disconnect from \[127\.0\.0\.4\]", timeout=0))
    with smtp_util.Client(srv.host, srv.port, source="127.0.0.4") as c:
        c.send("EHLO client.test\r\nMAIL FROM:<a@sender.example>\r\n"
               "RCPT TO:<%s>\r\n" % ALICE)
        c.replies(2)
    assert srv.wait_log(r"smtp disconnect from \[127\.0\.0\.4\]", count=before + 1)
    assert rcpt(srv, "127.0.0.6").code == 250


BAD = {"dnsbl_sites": (("zen.%s=127.0.0.[9..2]" % Z, "answer filter"),
                       ("zen.%s*x" % Z, "weight"), ("a..b", "not a domain")),
       "greylist_whitelist": (("192.0.2.0/33", "not a list of addresses"),
                              ("mail.example", "not a list of addresses"))}
BAD["rhsbl_sites"] = BAD["dnsbl_sites"]
BAD["rhsbl_helo_sites"] = BAD["dnsbl_sites"]


@pytest.mark.parametrize("key", sorted(BAD))
def test_bad_lists_refused(env, key):
    inst = env["grey"]
    for bad, what in BAD[key]:
        cp = inst.run("-o", key + "=" + bad, "check", check=False)
        out = cp.stdout + cp.stderr
        assert cp.returncode == 1 and key + ": " in out and what in out, cp
        cp = inst.run("-o", key + "=" + bad, "serve", check=False, timeout=20)
        assert cp.returncode == 1 and key + ": " in cp.stderr and what in cp.stderr, cp
        assert len(cp.stderr.strip().splitlines()) == 1, cp.stderr


# ---- greylisting ----

def test_greylisting(env):
    inst = env["grey"]
    opts = ("greylist=on", "greylist_delay=2", "greylist_expire=86400", "spf_policy=ignore",
            "greylist_whitelist=192.0.2.0/24, 127.0.0.9")
    srv = smtp_util.start_smtp(inst, opts)
    try:
        sender = "list@sender.example"
        r = rcpt(srv, "127.0.0.2", ALICE, sender)
        t_first = time.monotonic()
        assert r.code == 451 and "4.7.1" in r.text and "Greylisted" in r.text, r
        assert srv.wait_log(r"greylist: defer RCPT from \[127\.0\.0\.2\].*to=<%s> "
                     r"\(127\.0\.0\.0/24\)" % ALICE)
        # early retry: still greylisted
        assert rcpt(srv, "127.0.0.2", ALICE, sender).code == 451
        # unknown recipients are refused as before, not greylisted
        assert rcpt(srv, "127.0.0.2", "nobody@example.test", sender).code == 550
        # the bounce sender: its own triplet
        assert rcpt(srv, "127.0.0.2", ALICE, "").code == 451
        # this host itself and greylist_whitelist: never greylisted
        assert rcpt(srv, "127.0.0.1", BOB, sender).code == 250
        assert rcpt(srv, "127.0.0.9", BOB, sender).code == 250
        time.sleep(max(0.0, t_first + 2.2 - time.monotonic()))
        # after the delay: passes, from another address of the same /24
        with smtp_util.Client(srv.host, srv.port, source="127.0.0.3") as c:
            r = c.send_message(sender, (ALICE,), b"Subject: grey\r\n\r\nhello\r\n")
            assert r.code == 250, r
            c.expect("QUIT", 221)
        # another recipient: greylisted again
        assert rcpt(srv, "127.0.0.2", BOB, sender).code == 451
    finally:
        problems = server.check_stopped([srv])
        assert not problems, problems
    # the state outlives a restart
    with server.running(smtp_util.start_smtp, inst, opts) as srv:
        assert rcpt(srv, "127.0.0.2", ALICE, sender).code == 250
        assert rcpt(srv, "127.0.0.2", "carol@example.test", sender).code in (550, 451)
    assert os.path.exists(os.path.join(smtp_util.queue_dir(inst), "state.db"))
