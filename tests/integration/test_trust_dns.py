"""SPF and DKIM checks of incoming mail (`spf_policy`, `dkim_verify`,
`dns_resolver`), against a real authoritative DNS server: Debian's nsd, run
here on a free loopback port with its own configuration and zone (never the
system service). petrel's libunbound forwards every query to it.

SPF (RFC 7208, libspf2): pass, fail, softfail, neutral, none, permerror (a
syntax error; more than 10 lookups; an include loop), temperror (a domain
the server refuses; a resolver on a closed port), the HELO identity for
MAIL FROM:<>, and spf_policy = reject giving 550 5.7.23 / 451 4.7.24.
DKIM (RFC 6376, libopendkim): messages signed by dkimpy (python3-dkim, an
independent signer), good, bad body hash, bad signature, missing key, two
signatures, a signature with a huge tag; each verdict agrees with dkimpy's
own verification through the same DNS server. The one Authentication-Results
field (RFC 8601) carries this host's authserv-id, and a field in the message
claiming that id is removed while others stay.

DMARC (RFC 7489; libopendmarc with the records fed from petrel's lookups,
libpsl for organizational domains): pass through SPF alignment and through
DKIM alignment only, relaxed and strict, the organizational domain's record
and its sp= for a subdomain, p=reject refused with 550 5.7.1, p=quarantine
stored in Junk, p=none and pct=0, no record, a malformed record, several
records, a refused lookup, no single From address, and the modes enforce
(the "mark" server), mark (the "reject" server) and ignore (the "deadns"
server).

The client connects from 127.0.0.2: petrel does not check mail from this
host itself (127.0.0.1, ::1), as checked at the end.
"""

import base64
import os
import re
import signal
import subprocess
import time

import dkim
import dns.resolver
import pytest

import smtp_util
import dns_util
from harness import server
from harness.instance import TIMEOUT_SCALE, add_users, make_instance
from harness.ports import free_ports
from smtp_util import maildir_of, read_new, split_stored

ALICE = "alice@example.test"
HOST = smtp_util.HOSTNAME
CLIENT = "127.0.0.2"
Z = "trusttest"

# h1..h11: one A lookup each, one more than RFC 7208 4.6.4 allows
TOO_MANY = " ".join("a:h%d.%s" % (i, Z) for i in range(1, 12))

SPF_RECORDS = [
    'pass.spf IN TXT "v=spf1 ip4:127.0.0.2 -all"',
    'fail.spf IN TXT "v=spf1 ip4:192.0.2.1 -all"',
    'softfail.spf IN TXT "v=spf1 ip4:192.0.2.1 ~all"',
    'neutral.spf IN TXT "v=spf1 ?all"',
    'none.spf IN A 192.0.2.7',
    'syntax.spf IN TXT "v=spf1 ip4:not-an-address -all"',
    'many.spf IN TXT "v=spf1 %s -all"' % TOO_MANY,
    'loop.spf IN TXT "v=spf1 include:loop.spf.%s -all"' % Z,
    'redir1.spf IN TXT "v=spf1 redirect=redir2.spf.%s"' % Z,
    'redir2.spf IN TXT "v=spf1 redirect=redir1.spf.%s"' % Z,
    # the lookup leaves the zone: nsd refuses, no answer -> temperror
    'refused.spf IN TXT "v=spf1 include:elsewhere.invalid-zone -all"',
    # macros (RFC 7208 7): expanded, looked up, no match
    'macro.spf IN TXT "v=spf1 exists:%%{l1r-}.%%{d4}.%%{i}.%%{h}.m.%s '
    'exp=%%{l}%%{l}%%{l}.x.%s ~all"' % (Z, Z),
    'helo.spf IN TXT "v=spf1 ip4:127.0.0.2 -all"',
] + ["h%d IN A 192.0.2.%d" % (i, i) for i in range(1, 12)]

# DMARC policies (trusttest is no listed suffix: the default rule makes
# NAME.trusttest an organizational domain)
DMARC_RECORDS = [
    '_dmarc.rej IN TXT "v=DMARC1; p=reject"',
    'rej IN TXT "v=spf1 ip4:127.0.0.2 -all"',
    'mail.rej IN TXT "v=spf1 ip4:127.0.0.2 -all"',
    '_dmarc.quar IN TXT "v=DMARC1; p=quarantine; rua=mailto:d@quar.%s"' % Z,
    '_dmarc.mon IN TXT "v=DMARC1; p=none"',
    '_dmarc.strict IN TXT "v=DMARC1; p=reject; aspf=s; adkim=s"',
    'strict IN TXT "v=spf1 ip4:127.0.0.2 -all"',
    'mail.strict IN TXT "v=spf1 ip4:127.0.0.2 -all"',
    '_dmarc.org IN TXT "v=DMARC1; p=none; sp=reject"',
    '_dmarc.dk IN TXT "v=DMARC1; p=reject"',
    '_dmarc.bad IN TXT "v=DMARC1; p=bogus"',
    '_dmarc.two IN TXT "v=DMARC1; p=none"',
    '_dmarc.two IN TXT "v=DMARC1; p=reject"',
    '_dmarc.pct0 IN TXT "v=DMARC1; p=reject; pct=0"',
    '_dmarc.other IN TXT "v=spf1 -all"',
]

# domain_policy_file of the "policy" server (server-wide: spf_policy =
# mark, dmarc_policy = mark): example.test rejects SPF failures and
# enforces DMARC, the subdomains of sub.test ignore DMARC
OTHER = "bob@other.test"
SUBUSER = "sam@lists.sub.test"
POLICIES = """# recipient domains with their own trust policy
example.test     spf_policy=reject dmarc_policy=enforce
.sub.test        dmarc_policy=ignore   # lists: forwarded mail
"""

MSG = (b"From: sender@dkim.trusttest\r\nTo: alice@example.test\r\n"
       b"Subject: trust\r\nDate: Sun, 06 Dec 2026 05:00:00 +0000\r\n"
       b"Message-ID: <t1@dkim.trusttest>\r\n\r\nbody line 1\r\nbody line 2\r\n")


def _key(tmp):
    """An RSA key: its PEM and the DKIM key record (p=) value."""
    pem = os.path.join(tmp, "dkim.pem")
    subprocess.run(["openssl", "genrsa", "-out", pem, "2048"], check=True,
                   capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", pem, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    with open(pem, "rb") as f:
        return f.read(), base64.b64encode(der).decode()


def _txt(value):
    """A TXT rdata of 255-octet strings."""
    return " ".join('"%s"' % value[i:i + 255] for i in range(0, len(value), 255))


def Nsd(workdir, records):
    """nsd serving zone `trusttest.` (dns_util.Nsd) with these records."""
    zone = ("$ORIGIN %s.\n$TTL 300\n" % Z +
            "@ IN SOA ns.%s. host.%s. 1 3600 600 86400 300\n" % (Z, Z) +
            "@ IN NS ns.%s.\nns IN A 127.0.0.1\n" % Z +
            "".join(r + "\n" for r in records))
    return dns_util.Nsd(workdir, Z, zone)


@pytest.fixture(scope="module")
def env(petrel_bin, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("nsd runs as root here (the test command runs as root)")
    tmp = str(tmp_path_factory.mktemp("trust-dns"))
    pem, pub = _key(tmp)
    records = list(SPF_RECORDS) + DMARC_RECORDS
    for sel, dom in (("sel1", "dkim"), ("sel2", "other"), ("sel1", "dk"),
                     ("sel1", "mail.strict")):
        records.append("%s._domainkey.%s IN TXT %s" % (sel, dom, _txt("v=DKIM1; k=rsa; p=" + pub)))
    ns = Nsd(tmp, records)
    insts = {}
    for name in ("mark", "reject", "deadns", "policy"):
        insts[name] = make_instance(petrel_bin, os.path.join(tmp, name), "sqlite")
        add_users(insts[name], (ALICE,), password=None)
    insts["policy"].run("domain", "add", OTHER.split("@")[1])
    insts["policy"].run("domain", "add", SUBUSER.split("@")[1])
    add_users(insts["policy"], (OTHER, SUBUSER), password=None)
    policies = os.path.join(tmp, "domain-policies")
    with open(policies, "w") as f:
        f.write(POLICIES)
    dead = free_ports(1)[0]
    with server.running(smtp_util.start_smtp, insts["mark"],
                        ("dns_resolver=" + ns.resolver, "spf_policy=mark",
                         "dkim_verify=yes", "dmarc_policy=enforce")) as mark, \
        server.running(smtp_util.start_smtp, insts["reject"],
                       ("dns_resolver=" + ns.resolver, "spf_policy=reject",
                        "dkim_verify=no", "dmarc_policy=mark")) as reject, \
        server.running(smtp_util.start_smtp, insts["deadns"],
                       ("dns_resolver=127.0.0.1:%d" % dead,
                        "dmarc_policy=ignore")) as deadns, \
        server.running(smtp_util.start_smtp, insts["policy"],
                       ("dns_resolver=" + ns.resolver, "spf_policy=mark",
                        "dmarc_policy=mark", "domain_policy_file=" + policies)) as policy:
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = ["127.0.0.1"]
        res.port = ns.port
        res.lifetime = 5 * TIMEOUT_SCALE
        yield {"mark": mark, "reject": reject, "deadns": deadns, "key": pem,
               "policy": policy, "policies": policies,
               "resolver": res, "dns": ns.resolver}
    ns.stop()


def folder_new(inst, folder=None):
    """The contents of ALICE's new/ in INBOX or a folder."""
    d = maildir_of(inst, ALICE)
    if folder is not None:
        d = os.path.join(d, "." + folder)
    d = os.path.join(d, "new")
    out = []
    for n in (sorted(os.listdir(d)) if os.path.isdir(d) else []):
        with open(os.path.join(d, n), "rb") as f:
            out.append(f.read())
    return out


def send(srv, sender, data=MSG, helo="client.test", source=CLIENT, folder=None):
    """One transaction from `source`; the reply that ended it and the stored
    copy (None when refused), which must be in INBOX (or `folder`)."""
    before = set(read_new(srv.instance, ALICE))
    before_f = set(folder_new(srv.instance, folder)) if folder else set()
    with smtp_util.Client(srv.host, srv.port, source=source) as c:
        c.expect("EHLO " + helo, 250)
        r = c.cmd("MAIL FROM:<%s>" % sender)
        if r.code == 250:
            c.expect("RCPT TO:<%s>" % ALICE, 250)
            c.expect("DATA", 354)
            c.send(smtp_util.dot_stuff(data) + b".\r\n")
            r = c.reply()
        c.expect("QUIT", 221)
    if r.code != 250:
        return r, None
    new = [m for m in read_new(srv.instance, ALICE) if m not in before]
    if folder is not None:
        assert new == [], new
        new = [m for m in folder_new(srv.instance, folder) if m not in before_f]
    assert len(new) == 1, new
    return r, new[0]


def results(stored):
    """The Authentication-Results petrel prepended: (authserv-id, {method:
    [clause, ...]}), and the message after it."""
    head, rest = split_stored(stored)
    ar = head.get("Authentication-Results")
    assert ar is not None, stored[:400]
    value = re.sub(r"\s+", " ", ar[len("Authentication-Results: "):])
    parts = [p.strip() for p in value.split(";")]
    methods = {}
    for p in parts[1:]:
        methods.setdefault(p.split("=", 1)[0], []).append(p)
    return parts[0], methods, rest


def spf_of(srv, sender, **kw):
    r, stored = send(srv, sender, **kw)
    assert r.code == 250, r
    authserv, methods, _ = results(stored)
    assert authserv == HOST
    assert len(methods["spf"]) == 1, methods
    return methods["spf"][0]


@pytest.mark.parametrize("domain,expected", [
    ("pass", "pass"), ("fail", "fail"), ("softfail", "softfail"),
    ("neutral", "neutral"), ("none", "none"), ("nonexistent", "none"),
    ("syntax", "permerror"), ("many", "permerror"), ("loop", "permerror"),
    ("redir1", "permerror"), ("refused", "temperror"), ("macro", "softfail"),
])
def test_spf_results_are_recorded(env, domain, expected):
    clause = spf_of(env["mark"], "user@%s.spf.%s" % (domain, Z))
    assert clause == "spf=%s smtp.mailfrom=user@%s.spf.%s" % (expected, domain, Z)


def test_spf_helo_identity_and_long_macro_input(env):
    # MAIL FROM:<>: the HELO name is the identity (RFC 7208 2.3)
    clause = spf_of(env["mark"], "", helo="helo.spf." + Z)
    assert clause == "spf=pass smtp.helo=helo.spf." + Z
    # a long local part through the macros: expanded within bounds
    local = "a-" * 30 + "b"
    clause = spf_of(env["mark"], "%s@macro.spf.%s" % (local, Z))
    assert clause.startswith("spf=softfail ")


def test_spf_reject_policy(env):
    srv = env["reject"]
    r, _ = send(srv, "user@fail.spf." + Z)
    assert r.code == 550 and r.text.startswith("5.7.23"), r
    r, _ = send(srv, "user@refused.spf." + Z)
    assert r.code == 451 and r.text.startswith("4.7.24"), r
    # softfail, permerror, pass: accepted and recorded; dkim_verify = no
    for domain, result in (("softfail", "softfail"), ("syntax", "permerror"),
                           ("pass", "pass")):
        r, stored = send(srv, "user@%s.spf.%s" % (domain, Z))
        assert r.code == 250, r
        _, methods, _ = results(stored)
        assert [m.split()[0] for m in methods["spf"]] == ["spf=" + result]
        assert "dkim" not in methods
    assert srv.wait_log("reject: MAIL from")


def signed(env, msg=MSG, sel=b"sel1", dom=b"dkim.trusttest", **kw):
    return dkim.sign(msg, sel, dom, env["key"], include_headers=[b"from", b"to", b"subject"],
                     **kw) + msg


def dkimpy_verdicts(env, msg):
    """dkimpy's verdict on each signature, through the same nsd."""
    def dnsfunc(name, timeout=5):
        try:
            ans = env["resolver"].resolve(name.decode().rstrip("."), "TXT")
        except Exception:
            return b""
        return b"".join(b"".join(r.strings) for r in ans[:1])
    def one(i):
        try:
            return bool(dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc))
        except Exception:  # dkimpy raises on some junk (ValueError...)
            return False
    d = dkim.DKIM(msg)
    n = len([h for h in d.headers if h[0].lower() == b"dkim-signature"])
    return [one(i) for i in range(n)]


def dkim_of(env, msg, srv="mark"):
    r, stored = send(env[srv], "user@pass.spf." + Z, data=msg)
    assert r.code == 250, r
    _, methods, rest = results(stored)
    return methods["dkim"], rest


def test_dkim_verdicts_agree_with_dkimpy(env):
    good = signed(env)
    bad_body = good.replace(b"body line 2", b"body line X")
    bad_sig = good.replace(b"Subject: trust", b"Subject: trusT")
    no_key = signed(env, sel=b"gone")
    two = dkim.sign(good, b"sel2", b"other.trusttest", env["key"],
                    include_headers=[b"from", b"subject"]) + good
    cases = [
        (good, ["pass"], None),
        (bad_body, ["fail"], "body hash"),
        (bad_sig, ["fail"], "signature verification"),
        (no_key, ["permerror"], "no key"),
        (two, ["pass", "pass"], None),
    ]
    for msg, want, reason in cases:
        clauses, rest = dkim_of(env, msg)
        got = [c.split()[0][len("dkim="):] for c in clauses]
        assert sorted(got) == sorted(want), (clauses, want)
        assert sorted(g == "pass" for g in got) == sorted(dkimpy_verdicts(env, msg))
        if reason:
            assert reason in clauses[0], clauses
        # the stored message is the one sent: still verifies as it did
        assert rest == msg.replace(b"\r\n", b"\n")
    clauses, _ = dkim_of(env, good)
    assert clauses == ["dkim=pass header.d=dkim.trusttest header.i=@dkim.trusttest "
                       "header.s=sel1"]
    clauses, _ = dkim_of(env, two)
    assert sorted(c.split("header.d=")[1].split()[0] for c in clauses) == \
        ["dkim.trusttest", "other.trusttest"]
    # no signature
    clauses, _ = dkim_of(env, MSG)
    assert clauses == ["dkim=none"]


def test_dkim_hostile_signature(env):
    huge = (b"DKIM-Signature: v=1; a=rsa-sha256; d=dkim.trusttest; s=sel1; "
            b"h=from; bh=" + b"A" * 60000 + b"; b=" + b"B" * 60000 + b"; x=" +
            b"9" * 5000 + b"\r\n")
    junk = b"DKIM-Signature: \x01\x02;;;=;==;v=;d=;s=\r\n"
    # a signature that cannot be used is neutral (RFC 8601 2.7.1); a good
    # one next to it still passes, as dkimpy says
    for msg, want in ((huge + MSG, ["neutral"]), (junk + MSG, ["neutral"]),
                      (huge + signed(env), ["neutral", "pass"])):
        clauses, rest = dkim_of(env, msg)
        got = sorted(c.split()[0][len("dkim="):] for c in clauses)
        assert got == want, clauses
        assert sorted(g == "pass" for g in got) == sorted(dkimpy_verdicts(env, msg))
        assert rest == msg.replace(b"\r\n", b"\n")
    assert not env["mark"].crashes()


def test_authentication_results_of_ours_removed(env):
    forged = (b"Authentication-Results: " + HOST.encode() + b";\r\n\tspf=pass "
              b"smtp.mailfrom=ceo@example.test;\r\n\tdkim=pass header.d=example.test\r\n"
              b"Authentication-Results: (comment) " + HOST.upper().encode() +
              b"; dkim=pass\r\n"
              b"Authentication-Results: other.example; spf=pass\r\n")
    r, stored = send(env["mark"], "user@fail.spf." + Z, data=forged + MSG)
    assert r.code == 250, r
    authserv, methods, rest = results(stored)
    assert methods["spf"] == ["spf=fail smtp.mailfrom=user@fail.spf." + Z]
    assert rest.count(b"Authentication-Results:") == 1
    assert b"Authentication-Results: other.example; spf=pass\n" in rest
    assert env["mark"].wait_log("removed 2 Authentication-Results fields")


def test_dead_resolver_gives_temperror(env):
    r, stored = send(env["deadns"], "user@pass.spf." + Z, data=signed(env))
    assert r.code == 250, r
    _, methods, _ = results(stored)
    assert methods["spf"] == ["spf=temperror smtp.mailfrom=user@pass.spf." + Z]
    assert [c.split()[0] for c in methods["dkim"]] == ["dkim=temperror"]


def test_local_client_is_not_checked(env):
    # from 127.0.0.1 (this host): no SPF; DKIM is still verified
    r, stored = send(env["mark"], "user@fail.spf." + Z, data=signed(env), source="127.0.0.1")
    assert r.code == 250, r
    _, methods, _ = results(stored)
    assert "spf" not in methods and methods["dkim"][0].startswith("dkim=pass")


def test_bdat_is_checked_and_submission_is_not(env, out_instance, petrel_start):
    # BDAT (RFC 3030): the same checks as DATA
    msg = signed(env)
    before = set(read_new(env["mark"].instance, ALICE))
    with smtp_util.Client(env["mark"].host, env["mark"].port, source=CLIENT) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<user@softfail.spf.%s>" % Z, 250)
        c.expect("RCPT TO:<%s>" % ALICE, 250)
        c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        assert c.reply().code == 250
        c.expect("QUIT", 221)
    new = [m for m in read_new(env["mark"].instance, ALICE) if m not in before]
    _, methods, _ = results(new[0])
    assert methods["spf"] == ["spf=softfail smtp.mailfrom=user@softfail.spf." + Z]
    assert methods["dkim"][0].startswith("dkim=pass ")
    # an authenticated sender: no check, no field of ours, and a forged
    # one is still removed
    import mx_util
    srv = petrel_start(out_instance, ("dns_resolver=" + env["dns"],))
    forged = b"Authentication-Results: " + HOST.encode() + b"; dkim=pass\r\n"
    r = srv.submit(mx_util.ALICE, mx_util.ALICE, [mx_util.BOB],
                   forged + mx_util.make_message("sub", to=mx_util.BOB))
    assert r.code == 250, r
    assert mx_util.wait_for(lambda: read_new(out_instance, mx_util.BOB))
    head, rest = split_stored(read_new(out_instance, mx_util.BOB)[0])
    assert "Authentication-Results" not in head
    assert b"Authentication-Results" not in rest


def test_bad_dns_resolver_is_refused(env):
    """A dns_resolver that is not an IP address: serve stops with one line,
    petrel check names it."""
    inst = env["mark"].instance
    p = subprocess.run([inst.bin, "-c", inst.conf, "-o", "dns_resolver=ns.example:53",
                        "-o", "smtp_listen=127.0.0.1:%d" % free_ports(1)[0], "serve"],
                       capture_output=True, text=True, timeout=20, cwd=inst.dir)
    assert p.returncode != 0
    assert "dns_resolver" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    cp = inst.run("-o", "dns_resolver=ns.example:53", "check", check=False)
    assert cp.returncode == 1 and "dns_resolver ns.example@53" in cp.stderr, cp.stderr


# ---- DMARC ----

def mail(from_hdr, subject=b"dmarc"):
    return (b"From: " + from_hdr.encode() + b"\r\nTo: alice@example.test\r\n"
            b"Subject: " + subject + b"\r\nMessage-ID: <d@x.trusttest>\r\n\r\nhello\r\n")


def dmarc_of(env, sender, msg, srv="mark", folder=None):
    """Send; the reply, and the dmarc= clause of the stored copy (None when
    refused)."""
    r, stored = send(env[srv], sender, data=msg, folder=folder)
    if stored is None:
        return r, None
    _, methods, _ = results(stored)
    assert len(methods.get("dmarc", [])) <= 1, methods
    return r, (methods["dmarc"][0] if "dmarc" in methods else None)


def test_dmarc_pass_by_spf_alignment(env):
    # SPF passes for rej.trusttest itself, then for mail.rej (relaxed)
    for mfrom in ("user@rej." + Z, "user@mail.rej." + Z):
        r, clause = dmarc_of(env, mfrom, mail("Boss <boss@rej.%s>" % Z))
        assert r.code == 250, r
        assert clause == "dmarc=pass (p=reject dis=none) header.from=rej." + Z
    # aspf=s: mail.strict is not strict.trusttest -> fail, p=reject
    r, _ = dmarc_of(env, "user@mail.strict." + Z, mail("x@strict." + Z))
    assert r.code == 550 and r.text.startswith("5.7.1"), r
    assert "DMARC" in r.text and "strict." + Z in r.text
    r, clause = dmarc_of(env, "user@strict." + Z, mail("x@strict." + Z))
    assert r.code == 250 and clause.startswith("dmarc=pass "), (r, clause)
    assert env["mark"].wait_log("dmarc-reject: END-OF-MESSAGE")


def test_dmarc_pass_by_dkim_alignment_only(env):
    # SPF fails (unaligned anyway); a good d=dk.trusttest signature passes
    # for From dk.trusttest and, relaxed, for its subdomain news.dk (whose
    # policy is the organizational domain's)
    for frm in ("a@dk." + Z, "a@news.dk." + Z):
        msg = signed(env, msg=mail(frm), dom=b"dk.trusttest")
        r, clause = dmarc_of(env, "user@fail.spf." + Z, msg)
        assert r.code == 250, r
        assert clause == "dmarc=pass (p=reject dis=none) header.from=" + frm.split("@")[1]
    # unsigned, or signed by another domain: refused
    r, _ = dmarc_of(env, "user@fail.spf." + Z, mail("a@dk." + Z))
    assert r.code == 550, r
    r, _ = dmarc_of(env, "user@pass.spf." + Z,
                    signed(env, msg=mail("a@dk." + Z), dom=b"dkim.trusttest"))
    assert r.code == 550, r
    # a bad signature of the right domain does not pass
    bad = signed(env, msg=mail("a@dk." + Z), dom=b"dk.trusttest").replace(b"hello", b"hellO")
    r, _ = dmarc_of(env, "user@pass.spf." + Z, bad)
    assert r.code == 550, r
    # adkim=s: d=mail.strict.trusttest does not align with strict.trusttest
    msg = signed(env, msg=mail("a@strict." + Z), dom=b"mail.strict.trusttest")
    r, _ = dmarc_of(env, "user@pass.spf." + Z, msg)
    assert r.code == 550, r
    msg = signed(env, msg=mail("a@mail.strict." + Z), dom=b"mail.strict.trusttest")
    r, clause = dmarc_of(env, "user@pass.spf." + Z, msg)
    # mail.strict has no record: strict.trusttest's, via its sp (= p)
    assert r.code == 250 and clause.startswith("dmarc=pass (p=reject"), (r, clause)


def test_dmarc_quarantine_goes_to_junk(env):
    inst = env["mark"].instance
    junk = os.path.join(maildir_of(inst, ALICE), ".Junk")
    r, clause = dmarc_of(env, "user@pass.spf." + Z, mail("q@quar." + Z), folder="Junk")
    assert r.code == 250, r
    assert clause == "dmarc=fail (p=quarantine dis=quarantine) header.from=quar." + Z
    assert os.path.isdir(os.path.join(junk, "cur"))
    # pct=0: p=reject applies to no message; the next weaker policy
    # (quarantine) does (RFC 7489 6.6.4)
    r, clause = dmarc_of(env, "user@pass.spf." + Z, mail("q@pct0." + Z), folder="Junk")
    assert r.code == 250, r
    assert clause == "dmarc=fail (p=reject dis=quarantine) header.from=pct0." + Z


def test_dmarc_none_policy_and_no_record(env):
    r, clause = dmarc_of(env, "user@pass.spf." + Z, mail("m@mon." + Z))
    assert r.code == 250, r
    assert clause == "dmarc=fail (p=none dis=none) header.from=mon." + Z
    # no record at the domain nor at its organizational domain
    r, clause = dmarc_of(env, "user@pass.spf." + Z, mail("n@none.spf." + Z))
    assert r.code == 250 and clause == "dmarc=none header.from=none.spf." + Z, clause
    # a TXT record that is no DMARC record
    r, clause = dmarc_of(env, "user@pass.spf." + Z, mail("n@other." + Z))
    assert r.code == 250 and clause == "dmarc=none header.from=other." + Z, clause


def test_dmarc_organizational_domain_and_sp(env):
    # org.trusttest: p=none, sp=reject: its own mail fails with p=none...
    r, clause = dmarc_of(env, "user@pass.spf." + Z, mail("a@org." + Z))
    assert r.code == 250 and clause == "dmarc=fail (p=none dis=none) header.from=org." + Z
    # ...a subdomain without a record of its own gets sp=reject
    r, _ = dmarc_of(env, "user@pass.spf." + Z, mail("a@deep.sub.org." + Z))
    assert r.code == 550, r


def test_dmarc_errors(env):
    # a record libopendmarc refuses; several records; no answer: not applied
    for frm, want in (("b@bad." + Z, "dmarc=permerror (record not usable) header.from=bad." + Z),
                      ("b@two." + Z, "dmarc=permerror (several DMARC records) header.from=two." + Z),
                      ("b@x.invalid-zone", "dmarc=temperror (record lookup failed) "
                       "header.from=x.invalid-zone")):
        r, clause = dmarc_of(env, "user@pass.spf." + Z, mail(frm))
        assert r.code == 250 and clause == want, (r, clause)
    # RFC 7489 6.6.1: no single From address -> permerror, no policy, even
    # when one of them has p=reject
    two_from = (b"From: a@rej.trusttest\r\nFrom: b@rej.trusttest\r\n"
                b"Subject: x\r\n\r\nbody\r\n")
    two_addr = mail("a@rej.%s, b@mon.%s" % (Z, Z))
    no_from = b"Subject: x\r\n\r\nbody\r\n"
    for msg, reason in ((two_from, "several From fields"),
                        (two_addr, "not one From address"),
                        (no_from, "no From field"),
                        (mail("Joe <joe>"), "no usable From domain")):
        r, clause = dmarc_of(env, "user@pass.spf." + Z, msg)
        assert r.code == 250 and clause == "dmarc=permerror (%s)" % reason, (r, clause)
    assert not env["mark"].crashes()


def test_dmarc_mark_and_ignore(env):
    # mark (the "reject" server): p=reject fails are recorded, delivered
    r, clause = dmarc_of(env, "user@pass.spf." + Z, mail("a@rej." + Z), srv="reject")
    assert r.code == 250, r
    assert clause == "dmarc=fail (p=reject dis=reject) header.from=rej." + Z
    r, clause = dmarc_of(env, "user@pass.spf." + Z, mail("a@quar." + Z), srv="reject")
    assert r.code == 250 and clause.startswith("dmarc=fail (p=quarantine"), clause
    # ignore (the "deadns" server): no dmarc= clause (a lookup there would
    # have given temperror)
    r, stored = send(env["deadns"], "user@pass.spf." + Z, data=mail("a@rej." + Z))
    assert r.code == 250, r
    _, methods, _ = results(stored)
    assert "dmarc" not in methods and "spf" in methods


def test_dmarc_local_client_not_checked_and_init_default(env):
    r, stored = send(env["mark"], "user@pass.spf." + Z, data=mail("a@rej." + Z),
                     source="127.0.0.1")
    assert r.code == 250, r
    _, methods, _ = results(stored)
    assert "dmarc" not in methods
    # petrel init writes enforce; a configuration without the key is mark
    assert env["mark"].instance.config().get("dmarc_policy") == "enforce"
    cp = env["mark"].instance.run("help", "dmarc_policy", check=False)
    assert cp.returncode == 0 and "default: mark" in cp.stdout, cp.stdout


def test_results_visible_to_sieve(env):
    """A user's Sieve script sees the checks' results in petrel's
    Authentication-Results field (header tests), as Pigeonhole users test
    them: an SPF fail is filed apart, a DKIM-signed message elsewhere,
    anything else kept."""
    srv = env["mark"]
    inst = srv.instance
    carol = "carol@example.test"
    if not any(u.startswith(carol) for u in inst.run("user", "list").stdout.split()):
        inst.add_user(carol)
    script = os.path.join(inst.dir, "results.sieve")
    with open(script, "w") as f:
        f.write('require ["fileinto", "mailbox"];\n'
                'if header :contains "Authentication-Results" "spf=fail" {\n'
                '  fileinto :create "SpfFail"; stop;\n'
                '}\n'
                'if header :matches "Authentication-Results" "*dkim=pass*" {\n'
                '  fileinto :create "Signed"; stop;\n'
                '}\n')
    inst.run("sieve", "put", carol, "results", script)
    inst.run("sieve", "activate", carol, "results")
    md = maildir_of(inst, carol)

    def deliver(sender, data):
        with smtp_util.Client(srv.host, srv.port, source=CLIENT) as c:
            c.expect("EHLO client.test", 250)
            c.expect("MAIL FROM:<%s>" % sender, 250)
            c.expect("RCPT TO:<%s>" % carol, 250)
            c.expect("DATA", 354)
            c.send(smtp_util.dot_stuff(data) + b".\r\n")
            assert c.reply().code == 250
            c.expect("QUIT", 221)

    def count(folder):
        d = os.path.join(md, "." + folder if folder else "", "new")
        return len(os.listdir(d)) if os.path.isdir(d) else 0

    deliver("user@fail.spf." + Z, MSG)
    deliver("user@pass.spf." + Z, signed(env))
    deliver("user@pass.spf." + Z, MSG)
    assert (count("SpfFail"), count("Signed"), count(None)) == (1, 1, 1)


# ---- domain_policy_file: policies per recipient domain ----

def transaction(srv, sender, rcpts, data):
    """One transaction naming every recipient; (each RCPT's reply, the
    reply after the data or None when no recipient was taken)."""
    with smtp_util.Client(srv.host, srv.port, source=CLIENT) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<%s>" % sender, 250)
        replies = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        end = None
        if any(r.code == 250 for r in replies):
            c.expect("DATA", 354)
            c.send(smtp_util.dot_stuff(data) + b".\r\n")
            end = c.reply()
        c.expect("QUIT", 221)
    return replies, end


def new_of(inst, addr):
    d = os.path.join(maildir_of(inst, addr), "new")
    return sorted(os.path.join(d, n) for n in os.listdir(d)) if os.path.isdir(d) else []


def test_domain_policy_spf_per_recipient(env):
    srv = env["policy"]
    inst = srv.instance
    before = {a: len(new_of(inst, a)) for a in (ALICE, OTHER)}
    # SPF fail: refused for example.test's recipient only, at RCPT
    replies, end = transaction(srv, "user@fail.spf." + Z, [ALICE, OTHER], MSG)
    assert replies[0].code == 550 and replies[0].text.startswith("5.7.23"), replies
    assert "fail.spf." + Z in replies[0].text
    assert replies[1].code == 250 and end.code == 250, (replies, end)
    assert len(new_of(inst, ALICE)) == before[ALICE]
    got = new_of(inst, OTHER)
    assert len(got) == before[OTHER] + 1
    with open(got[-1], "rb") as f:
        _, methods, _ = results(f.read())
    assert methods["spf"][0].startswith("spf=fail "), methods
    # temperror: 451 for the same recipient; the other still gets it
    replies, end = transaction(srv, "user@refused.spf." + Z, [OTHER, ALICE], MSG)
    assert replies[0].code == 250 and end.code == 250, (replies, end)
    assert replies[1].code == 451 and replies[1].text.startswith("4.7.24"), replies
    # a pass: taken (OTHER alone: its DMARC policy is not ALICE's, so the
    # two do not share a transaction; see the next test)
    replies, end = transaction(srv, "user@pass.spf." + Z, [ALICE], MSG)
    assert replies[0].code == 250 and end.code == 250, (replies, end)
    assert srv.wait_log("reject: RCPT from")


def test_domain_policy_dmarc_one_policy_per_transaction(env):
    srv = env["policy"]
    inst = srv.instance
    msg = mail("Boss <boss@rej.%s>" % Z)   # p=reject, SPF unaligned
    n_other, n_alice = len(new_of(inst, OTHER)), len(new_of(inst, ALICE))
    # the first recipient (mark) sets the transaction's policy; the
    # enforcing domain's recipient is deferred to a transaction of its own
    replies, end = transaction(srv, "user@pass.spf." + Z, [OTHER, ALICE], msg)
    assert replies[0].code == 250, replies
    assert replies[1].code == 452 and replies[1].text.startswith("4.5.3"), replies
    assert end.code == 250, end
    got = new_of(inst, OTHER)
    assert len(got) == n_other + 1
    with open(got[-1], "rb") as f:
        _, methods, _ = results(f.read())
    assert methods["dmarc"] == ["dmarc=fail (p=reject dis=reject) header.from=rej." + Z]
    # alone, the enforcing domain's recipient gets p=reject applied
    replies, end = transaction(srv, "user@pass.spf." + Z, [ALICE], msg)
    assert replies[0].code == 250 and end.code == 550, (replies, end)
    assert end.text.startswith("5.7.1"), end
    assert len(new_of(inst, ALICE)) == n_alice
    # the same order reversed: enforce first, mark deferred, refused
    replies, end = transaction(srv, "user@pass.spf." + Z, [ALICE, OTHER], msg)
    assert [r.code for r in replies] == [250, 452] and end.code == 550
    # .sub.test: DMARC not checked for its subdomains' recipients; the
    # server-wide spf_policy (mark) still records SPF
    replies, end = transaction(srv, "user@pass.spf." + Z, [SUBUSER], msg)
    assert replies[0].code == 250 and end.code == 250
    with open(new_of(inst, SUBUSER)[-1], "rb") as f:
        _, methods, _ = results(f.read())
    assert "dmarc" not in methods and methods["spf"][0].startswith("spf=pass")
    # a client that sends to both (Python's smtplib) learns which one to
    # send again: the deferred recipient is in its refused list
    import smtplib
    with smtplib.SMTP(srv.host, srv.port, source_address=(CLIENT, 0)) as c:
        refused = c.sendmail("user@pass.spf." + Z, [OTHER, ALICE], msg)
    assert list(refused) == [ALICE] and refused[ALICE][0] == 452, refused
    assert not srv.crashes()


def test_domain_policy_file_errors(env):
    inst = env["policy"].instance
    assert inst.run("check", check=False).returncode == 0
    bad = os.path.join(inst.dir, "bad-policies")
    with open(bad, "w") as f:
        f.write("example.test spf_policy=reject\nexample..test dmarc_policy=mark\n")
    cp = inst.run("-o", "domain_policy_file=" + bad, "check", check=False)
    assert cp.returncode == 1, cp
    assert "domain_policy_file: %s:2: not a domain name" % bad in cp.stderr, cp.stderr
    cp = inst.run("-o", "domain_policy_file=" + bad + ".missing", "check", check=False)
    assert cp.returncode == 1 and "No such file" in cp.stderr, cp.stderr
    # petrel serve refuses to start with it, naming the line
    cp = inst.run("-o", "domain_policy_file=" + bad, "-o",
                  "smtp_listen=127.0.0.1:%d" % free_ports(1)[0],
                  "serve", check=False, timeout=30)
    assert cp.returncode != 0 and "%s:2:" % bad in cp.stderr, cp


def test_domain_policy_file_reload(env):
    """The file is read again on SIGHUP (new workers); a wrong line keeps
    the old configuration running instead of taking the workers down."""
    srv, path = env["policy"], env["policies"]

    def spf_fail_to(rcpt):
        replies, _ = transaction(srv, "user@fail.spf." + Z, [rcpt], MSG)
        return replies[0].code

    try:
        with open(path, "w") as f:
            f.write(POLICIES + "other.test spf_policy=sometimes\n")
        srv.send_signal(signal.SIGHUP)
        assert srv.wait_log("keeping the old configuration: domain_policy_file: "
                            "%s:4: spf_policy must be" % path)
        assert spf_fail_to(ALICE) == 550 and spf_fail_to(OTHER) == 250
        with open(path, "w") as f:
            f.write("other.test spf_policy=reject\n")
        srv.send_signal(signal.SIGHUP)
        assert srv.wait_log("SIGHUP: configuration reloaded")
        deadline = time.monotonic() + 10 * TIMEOUT_SCALE
        while spf_fail_to(OTHER) != 550:
            assert time.monotonic() < deadline, "the new file never applied"
            time.sleep(0.2)
        assert spf_fail_to(ALICE) == 250
        assert srv.alive() and not srv.crashes()
    finally:
        with open(path, "w") as f:
            f.write(POLICIES)
        srv.send_signal(signal.SIGHUP)
        assert srv.wait_log("SIGHUP: configuration reloaded", count=2)
