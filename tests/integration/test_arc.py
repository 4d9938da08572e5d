"""ARC (RFC 8617, docs/trust.md): petrel validates the chain of mail it
receives (`arc = verify` or `seal`) and records `arc=pass|fail|none` in its
one Authentication-Results field (RFC 8601), and with `arc = seal` adds an
ARC set to mail it forwards off-host (an alias to an external address).

Every chain here is made by an independent signer, dkimpy (python3-dkim's
arc_sign), with keys published by a real authoritative DNS server (Debian's
nsd on a free loopback port, dns_util.Nsd) that petrel's libunbound forwards
to. Chains of 1, 2, 3 and 4 hops pass; broken ones fail: the body changed
after the seal, a seal's b= altered, a missing set (i=1, and i=3 of four), a
seal with cv=fail, a key missing from DNS, a repeated set, huge tag values
and junk. On every case petrel's verdict is the one dkimpy's arc_verify
gives through the same DNS server (dkimpy's "no verdict" for a chain that a
seal ended with cv=fail is a failure: RFC 8617 5.2 step 2). A hop that
changed the body before sealing passes with header.oldest-pass.

Sealing: the forwarded copy reaches a FakeMX (mx_util) carrying a new set
(i = n + 1, cv= from the validation) signed with the forwarding domain's
DKIM key (`petrel dkim keygen`), and dkimpy's arc_verify says pass with that
key in the test DNS; after a broken chain the seal says cv=fail.
"""

import base64
import os
import re
import subprocess

import dkim
import dns.resolver
import pytest

import dns_util
import mx_util
import smtp_util
from harness import server
from harness.instance import TIMEOUT_SCALE, add_users, make_instance
from smtp_util import read_new, split_stored

Z = "arctest"
ALICE = "alice@rcpt." + Z
HOST = smtp_util.HOSTNAME
CLIENT = "127.0.0.2"

MSG = (b"From: Writer <writer@origin.arctest>\r\nTo: list@lists.arctest\r\n"
       b"Subject: arc test\r\nDate: Sun, 06 Dec 2026 05:00:00 +0000\r\n"
       b"Message-ID: <a1@origin.arctest>\r\n\r\nfirst line\r\n\r\nsecond  line \r\n")


def _key(tmp, name):
    pem = os.path.join(tmp, name + ".pem")
    subprocess.run(["openssl", "genrsa", "-out", pem, "2048"], check=True,
                   capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", pem, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    with open(pem, "rb") as f:
        return f.read(), base64.b64encode(der).decode()


def _txt(value):
    return " ".join('"%s"' % value[i:i + 255] for i in range(0, len(value), 255))


@pytest.fixture(scope="module")
def env(petrel_bin, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("nsd runs as root here (the test command runs as root)")
    tmp = str(tmp_path_factory.mktemp("arc"))
    pem, pub = _key(tmp, "hops")
    # the receiving instance (validation) and the forwarding one (sealing)
    recv = make_instance(petrel_bin, os.path.join(tmp, "recv"), "sqlite", domain="rcpt." + Z)
    add_users(recv, (ALICE,), password=None)
    fwd = make_instance(petrel_bin, os.path.join(tmp, "fwd"), "sqlite", domain="fwd." + Z)
    add_users(fwd, ("bob@fwd." + Z,), password=None)
    fwd.run("alias", "add", "list@fwd." + Z, "dest@remote.test")
    out = fwd.run("dkim", "keygen", "fwd." + Z, "--selector", "seal").stdout
    seal_txt = re.search(r"^value\t(.*)$", out, re.M).group(1)
    records = ["%s._domainkey.%s IN TXT %s" % (sel, dom, _txt("v=DKIM1; k=rsa; p=" + pub))
               for sel, dom in (("s1", "hop1"), ("s2", "hop2"), ("s3", "hop3"),
                                ("s4", "hop4"), ("s1", "origin"))]
    records.append("seal._domainkey.fwd IN TXT %s" % _txt(seal_txt))
    zone = ("$ORIGIN %s.\n$TTL 300\n" % Z +
            "@ IN SOA ns.%s. host.%s. 1 3600 600 86400 300\n" % (Z, Z) +
            "@ IN NS ns.%s.\nns IN A 127.0.0.1\n" % Z +
            "".join(r + "\n" for r in records))
    ns = dns_util.Nsd(tmp, Z, zone)
    world = mx_util.FakeMX()
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = ["127.0.0.1"]
    res.port = ns.port
    res.lifetime = 5 * TIMEOUT_SCALE
    common = ("dns_resolver=" + ns.resolver, "spf_policy=mark", "dmarc_policy=ignore")
    try:
        with server.running(smtp_util.start_smtp, recv, common + ("arc=verify",)) as r, \
                server.tracked(mx_util.start_petrel) as start:
            f = start(fwd, common + ("arc=seal", "relayhost=[127.0.0.1]:%d" % world.port))
            yield {"recv": r, "fwd": f, "key": pem, "resolver": res, "mx": world}
    finally:
        world.stop()
        ns.stop()


def dnsfunc_of(env):
    def dnsfunc(name, timeout=5):
        try:
            ans = env["resolver"].resolve(name.decode().rstrip("."), "TXT")
        except Exception:
            return b""
        return b"".join(b"".join(r.strings) for r in ans[:1])
    return dnsfunc


def dkimpy_arc(env, msg):
    """dkimpy's verdict: pass, fail or none (its None, a chain a seal ended
    with cv=fail, is a failure)."""
    try:
        cv, _, _ = dkim.arc_verify(msg, dnsfunc=dnsfunc_of(env))
    except ValueError:  # dkimpy raises on some junk (an x= of 5000 digits)
        return "fail"
    return {b"pass": "pass", b"none": "none"}.get(cv, "fail")


def hop(env, msg, n, cv="pass", sel=None, key=None):
    """Hop n (hopN.arctest) records its result and seals with dkimpy."""
    srv = ("hop%d.%s" % (n, Z)).encode()
    ar = b"Authentication-Results: " + srv + b"; arc=" + cv.encode() + b"\r\n"
    if n == 1 and cv == "pass":
        ar = b"Authentication-Results: " + srv + b"; spf=pass smtp.mailfrom=origin.arctest\r\n"
    signed = ar + msg
    fields = dkim.arc_sign(signed, sel or ("s%d" % n).encode(), srv, key or env["key"], srv)
    assert fields, "dkimpy made no ARC set"
    return b"".join(fields) + signed


def chain(env, hops, msg=MSG):
    for n in range(1, hops + 1):
        msg = hop(env, msg, n)
    return msg


def send(srv, data, rcpt=ALICE, sender="writer@origin." + Z):
    before = set(read_new(srv.instance, rcpt))
    with smtp_util.Client(srv.host, srv.port, source=CLIENT) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<%s>" % sender, 250)
        c.expect("RCPT TO:<%s>" % rcpt, 250)
        c.expect("DATA", 354)
        c.send(smtp_util.dot_stuff(data) + b".\r\n")
        r = c.reply()
        c.expect("QUIT", 221)
    assert r.code == 250, r
    new = [m for m in read_new(srv.instance, rcpt) if m not in before]
    assert len(new) == 1, new
    return new[0]


def arc_clause(stored):
    """petrel's arc= clause (its own Authentication-Results, the first
    field of the stored copy after Received)."""
    head, rest = split_stored(stored)
    ar = head.get("Authentication-Results")
    assert ar is not None, stored[:400]
    value = re.sub(r"\s+", " ", ar[len("Authentication-Results: "):])
    parts = [p.strip() for p in value.split(";")]
    assert parts[0] == HOST, parts
    arcs = [p for p in parts[1:] if p.startswith("arc=")]
    assert len(arcs) == 1, parts
    return arcs[0], rest


def verdict(env, msg):
    clause, rest = arc_clause(send(env["recv"], msg))
    assert rest == msg.replace(b"\r\n", b"\n")
    return clause


def drop_set(msg, i):
    """The message without the ARC fields of instance i."""
    out, skip = [], False
    for line in msg.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not skip:
                out.append(line)
            continue
        skip = (line.lower().startswith((b"arc-seal:", b"arc-message-signature:",
                                         b"arc-authentication-results:")) and
                re.search(rb"(^|[;:\s])i=%d;" % i, line) is not None)
        if not skip:
            out.append(line)
    return b"\r\n".join(out)


def set_fields(msg, i):
    """The ARC fields of instance i, with their continuation lines."""
    keep = msg.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    fields = re.findall(rb"(?m)^(?:ARC-[A-Za-z-]+:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)", keep)
    return [f for f in fields if re.search(rb"(^|[;:\s])i=%d;" % i, f)]


def test_good_chains_pass(env):
    for hops in (1, 2, 3, 4):
        msg = chain(env, hops)
        assert dkimpy_arc(env, msg) == "pass"
        clause = verdict(env, msg)
        assert clause == "arc=pass smtp.remote-ip=" + CLIENT, (hops, clause)
    # no ARC set at all
    assert dkimpy_arc(env, MSG) == "none"
    assert verdict(env, MSG) == "arc=none smtp.remote-ip=" + CLIENT
    # without its newest set, a chain of three is a good chain of two
    msg = drop_set(chain(env, 3), 3)
    assert dkimpy_arc(env, msg) == "pass"
    assert verdict(env, msg).startswith("arc=pass ")


def test_oldest_pass(env):
    """A hop that changed the body (a list footer) and sealed: the chain
    passes, its first AMS no longer does (RFC 8617 5.2 step 5)."""
    one = hop(env, MSG, 1)
    footer = one + b"-- \r\nthe list footer\r\n"
    two = hop(env, footer, 2)
    assert dkimpy_arc(env, two) == "pass"
    assert verdict(env, two) == "arc=pass header.oldest-pass=2 smtp.remote-ip=" + CLIENT


def broken_cases(env):
    two = chain(env, 2)
    three = chain(env, 3)
    four = chain(env, 4)
    # a seal's b= altered: one base64 character of the i=1 seal
    as1 = set_fields(two, 1)
    as1 = [f for f in as1 if f.startswith(b"ARC-Seal:")][0]
    m = re.search(rb"b=([A-Za-z0-9+/]{10})", as1)
    flipped = m.group(1)[:5] + (b"A" if m.group(1)[5:6] != b"A" else b"B") + m.group(1)[6:]
    bad_seal = two.replace(as1, as1.replace(m.group(0), b"b=" + flipped))
    assert bad_seal != two
    # the second hop says the chain had failed
    cv_fail = hop(env, hop(env, MSG, 1), 2, cv="fail")
    # a set repeated
    dup = b"".join(set_fields(two, 2)) + two
    # huge tag values: a seal's b= and an AMS's bh= of 60000 octets
    huge_as = (b"ARC-Seal: i=3; a=rsa-sha256; cv=pass; d=hop3.arctest; s=s3; b=" +
               b"QUJD" * 15000 + b"\r\n")
    huge_ams = (b"ARC-Message-Signature: i=3; a=rsa-sha256; c=relaxed/relaxed; "
                b"d=hop3.arctest; s=s3; h=from:to:subject; bh=" + b"QUJD" * 15000 +
                b"; b=" + b"QUJD" * 1000 + b"; x=" + b"9" * 5000 + b"\r\n")
    huge_aar = b"ARC-Authentication-Results: i=3; hop3.arctest; " + b"x" * 60000 + b"\r\n"
    return [
        ("body changed after the seal", two.replace(b"second  line", b"second line!"),
         "AMS 2 body hash mismatch"),
        ("a seal's b= altered", bad_seal, "AS 2 did not validate"),
        ("missing i=1", drop_set(three, 1), "ARC set 1 incomplete"),
        ("missing i=3 of four", drop_set(four, 3), "ARC set 3 incomplete"),
        ("a seal with cv=fail", cv_fail, "AS 2 says cv=fail"),
        ("key missing from DNS", hop(env, hop(env, MSG, 1), 2, sel=b"gone"), "AMS 2 no key"),
        ("a set repeated", dup, "ARC set 2 repeated"),
        ("huge tags", huge_aar + huge_ams + huge_as + two, "AMS 3 body hash mismatch"),
    ]


def test_broken_chains_fail(env):
    for name, msg, reason in broken_cases(env):
        assert dkimpy_arc(env, msg) == "fail", name
        clause = verdict(env, msg)
        assert clause == "arc=fail (%s) smtp.remote-ip=%s" % (reason, CLIENT), (name, clause)
    assert not env["recv"].crashes()


def test_junk(env):
    """Junk in ARC fields: a defined verdict, the one dkimpy gives; a field
    without any i= belongs to no set and is left aside (as dkimpy does)."""
    junk = b"ARC-Seal: \x01\x02;;;=;==;v=;d=;s=\r\n"
    one = chain(env, 1)
    cases = [
        (junk + MSG, "none"),
        (junk + one, "pass"),
        (b"ARC-Message-Signature: i=1; junk\r\n" + MSG, "fail"),
        (b"ARC-Seal: i=99999999999999999999; cv=none\r\n" + one, "fail"),
        (b"ARC-Seal: i=51; a=rsa-sha256; cv=pass; d=x.arctest; s=s; b=QUJD\r\n" + one,
         "fail"),
        (b"ARC-Authentication-Results: i=1; x\r\n" * 3 + MSG, "fail"),
        (one.replace(b"a=rsa-sha256", b"a=ed25519-sha256", 1), "fail"),
        (one.replace(b"cv=none", b"cv=maybe"), "fail"),
    ]
    for msg, want in cases:
        assert dkimpy_arc(env, msg) == want, msg[:120]
        clause = verdict(env, msg)
        assert clause.startswith("arc=" + want + " ") or clause.startswith("arc=" + want + " ("), \
            (clause, msg[:120])
    assert not env["recv"].crashes()


def test_results_visible_to_sieve(env):
    """A Sieve script tests the arc= result in petrel's field."""
    srv = env["recv"]
    inst = srv.instance
    carol = "carol@rcpt." + Z
    inst.add_user(carol)
    script = os.path.join(inst.dir, "arc.sieve")
    with open(script, "w") as f:
        f.write('require ["fileinto", "mailbox"];\n'
                'if header :contains "Authentication-Results" "arc=pass" {\n'
                '  fileinto :create "Forwarded"; stop;\n'
                '}\n')
    inst.run("sieve", "put", carol, "arc", script)
    inst.run("sieve", "activate", carol, "arc")
    send(srv, MSG, rcpt=carol)
    md = smtp_util.maildir_of(inst, carol)
    fw = os.path.join(md, ".Forwarded", "new")
    before = len(os.listdir(fw)) if os.path.isdir(fw) else 0
    with smtp_util.Client(srv.host, srv.port, source=CLIENT) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<writer@origin.%s>" % Z, 250)
        c.expect("RCPT TO:<%s>" % carol, 250)
        c.expect("DATA", 354)
        c.send(smtp_util.dot_stuff(chain(env, 2)) + b".\r\n")
        assert c.reply().code == 250
        c.expect("QUIT", 221)
    assert len(os.listdir(fw)) == before + 1
    assert len(os.listdir(os.path.join(md, "new"))) == 1


def test_arc_key_default_and_init(env):
    cp = env["recv"].instance.run("help", "arc", check=False)
    assert cp.returncode == 0 and "default: verify" in cp.stdout, cp.stdout
    assert env["fwd"].instance.config().get("arc") == "seal"


def forwarded(env, data, subject):
    """Send data to the alias list@fwd.arctest (-> dest@remote.test) from
    outside; the copy the FakeMX received."""
    f = env["fwd"]
    with smtp_util.Client(f.host, f.port, source=CLIENT) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<writer@origin.%s>" % Z, 250)
        c.expect("RCPT TO:<list@fwd.%s>" % Z, 250)
        c.expect("DATA", 354)
        c.send(smtp_util.dot_stuff(data) + b".\r\n")
        assert c.reply().code == 250
        c.expect("QUIT", 221)
    got = mx_util.wait_for(lambda: [t for t in env["mx"].messages()
                                    if subject.encode() in t.data])
    assert len(got) == 1, f.log()
    assert got[0].rcpts == ["dest@remote.test"]
    return got[0].data


def seal_of(data, i):
    m = re.search(rb"(?m)^ARC-Seal: i=%d;[^\r\n]*(?:\r\n[ \t][^\r\n]*)*" % i, data)
    assert m, data[:600]
    return re.sub(rb"\s+", b" ", m.group(0)).decode()


def test_forward_is_sealed(env):
    # no chain: i=1 cv=none
    msg = MSG.replace(b"Subject: arc test", b"Subject: fwd plain")
    out = forwarded(env, msg, "fwd plain")
    seal = seal_of(out, 1)
    assert " cv=none;" in seal and " d=fwd.arctest;" in seal and " s=seal;" in seal, seal
    assert dkimpy_arc(env, out) == "pass"
    # the AAR is our Authentication-Results, with its arc= verdict
    aar = re.search(rb"(?m)^ARC-Authentication-Results: i=1; [^\r\n]*(?:\r\n[ \t][^\r\n]*)*",
                    out)
    assert aar, out[:800]
    aar = re.sub(rb"\s+", b" ", aar.group(0)).decode()
    assert aar.startswith("ARC-Authentication-Results: i=1; %s; " % HOST), aar
    assert "; arc=none smtp.remote-ip=%s" % CLIENT in aar, aar
    # a chain of two that passed: i=3 cv=pass, the whole chain passes
    msg = chain(env, 2, MSG.replace(b"Subject: arc test", b"Subject: fwd chain"))
    out = forwarded(env, msg, "fwd chain")
    assert " cv=pass;" in seal_of(out, 3)
    cv, results, reason = dkim.arc_verify(out, dnsfunc=dnsfunc_of(env))
    assert cv == b"pass", reason
    assert [r["instance"] for r in results] == [3, 2, 1]
    assert all(r["as-valid"] and r["ams-valid"] for r in results[:1])
    # and a receiving petrel says pass too (both use one hostname: the
    # forwarder's Authentication-Results is removed as a claim of ours)
    assert arc_clause(send(env["recv"], out))[0].startswith("arc=pass ")
    # a broken chain: sealed with cv=fail, which ends the chain
    msg = chain(env, 2, MSG.replace(b"Subject: arc test", b"Subject: fwd broken"))
    msg = msg.replace(b"second  line", b"second line!")
    out = forwarded(env, msg, "fwd broken")
    assert " cv=fail;" in seal_of(out, 3)
    assert dkimpy_arc(env, out) == "fail"
    assert arc_clause(send(env["recv"], out))[0] == \
        "arc=fail (AS 3 says cv=fail) smtp.remote-ip=" + CLIENT
    assert env["fwd"].wait_log(r"arc: sealed i=3 cv=fail d=fwd\.arctest s=seal")
    assert not env["fwd"].crashes()


def test_sieve_redirect_is_sealed(env):
    """A Sieve redirect off-host is a forward too: sealed with the user's
    domain's key."""
    inst = env["fwd"].instance
    bob = "bob@fwd." + Z
    script = os.path.join(inst.dir, "redirect.sieve")
    with open(script, "w") as f:
        f.write('redirect "sieve-dest@remote.test";\n')
    inst.run("sieve", "put", bob, "redirect", script)
    inst.run("sieve", "activate", bob, "redirect")
    msg = hop(env, MSG.replace(b"Subject: arc test", b"Subject: fwd sieve"), 1)
    f = env["fwd"]
    with smtp_util.Client(f.host, f.port, source=CLIENT) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<writer@origin.%s>" % Z, 250)
        c.expect("RCPT TO:<%s>" % bob, 250)
        c.expect("DATA", 354)
        c.send(smtp_util.dot_stuff(msg) + b".\r\n")
        assert c.reply().code == 250
        c.expect("QUIT", 221)
    got = mx_util.wait_for(lambda: [t for t in env["mx"].messages()
                                    if b"fwd sieve" in t.data])
    assert len(got) == 1 and got[0].rcpts == ["sieve-dest@remote.test"], f.log()
    seal = seal_of(got[0].data, 2)
    assert " cv=pass;" in seal and " d=fwd.arctest;" in seal, seal
    assert dkimpy_arc(env, got[0].data) == "pass"


def test_arc_off(env, petrel_bin, tmp_path):
    """arc = off: no arc= clause (DKIM still recorded)."""
    inst = make_instance(petrel_bin, tmp_path / "off", "sqlite", domain="rcpt." + Z)
    add_users(inst, (ALICE,), password=None)
    resolver = "dns_resolver=127.0.0.1:%d" % env["resolver"].port
    with server.running(smtp_util.start_smtp, inst, (resolver, "arc=off")) as srv:
        stored = send(srv, chain(env, 1))
    head, _ = split_stored(stored)
    ar = head.get("Authentication-Results", "")
    assert "dkim=" in ar and re.search(r"[;\s]arc=", ar) is None, ar
