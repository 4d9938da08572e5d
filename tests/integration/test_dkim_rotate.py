"""`petrel dkim rotate DOMAIN`: a domain's DKIM key replaced with both
selectors published during the overlap. Step 1 makes the next key (printed
for publication, not signing); step 2 checks through dns_resolver (a local
Unbound) that the new record is published, then signs with the new key
while `petrel dns` keeps the old record; step 3 retires the old key after
the overlap (7 days, or --force). The running server follows each step
without a restart; python3-dkim verifies what it signs; as root the files
belong to the account the server runs as."""

import os
import pwd
import re

import pytest

import dns_util
from mx_util import PASSWORD, add_relay_domain, make_message, wire

dkim = pytest.importorskip("dkim")

DOMAIN = "rot.mxtest"
ANN = "ann@" + DOMAIN


def fields(cp):
    return dict(line.split("\t", 1) for line in cp.stdout.splitlines() if "\t" in line)


def dns_names(inst):
    out = inst.run("-o", "hostname=mx." + DOMAIN, "dns", DOMAIN).stdout
    return sorted(set(re.findall(r"^(\S+)\._domainkey\.", out, re.M)))


def txt(value):
    return " ".join('"%s"' % value[i:i + 255] for i in range(0, len(value), 255))


def sent_with(srv, mx, subject, records):
    """Submit one message for the relay; the selector it was signed with,
    after python3-dkim verified it with the published records."""
    before = len(mx.messages())
    m = make_message(subject, sender=ANN,
                     extra=b"Message-ID: <%s@rot.mxtest>\r\n" % subject.encode())
    assert srv.submit(ANN, ANN, ["x@relay.test"], wire(m)).code == 250
    got = mx.wait_messages(before + 1)
    assert len(got) == before + 1, srv.log()
    data = got[-1].data
    sel = re.search(rb"(?mi)^DKIM-Signature:.*?\bs=([A-Za-z0-9_-]+)", data, re.S)
    assert sel, data[:600]

    def dnsfunc(name, timeout=5):
        v = records.get(name.decode().rstrip("."))
        return v.encode() if v else None
    assert dkim.verify(data, dnsfunc=dnsfunc), "python3-dkim does not verify:\n%r" % data[:800]
    return sel.group(1).decode()


def test_rotation_with_overlap(mail_user_instance, petrel_start, fake_mx, tmp_path):
    inst = mail_user_instance
    inst.run("domain", "add", DOMAIN)
    inst.add_user(ANN, PASSWORD)
    first = fields(inst.run("dkim", "keygen", DOMAIN, "--selector", "s1"))
    mx = fake_mx()
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst)
    published = {first["name"]: first["value"]}
    assert sent_with(srv, mx, "before", published) == "s1"

    # step 1: the next key, published, not signing
    nxt = fields(inst.run("dkim", "rotate", DOMAIN, "--selector", "s2"))
    assert nxt["name"] == "s2._domainkey." + DOMAIN and nxt["signing"] == "s1", nxt
    assert nxt["value"] != first["value"]
    assert dns_names(inst) == ["s1", "s2"]
    assert sent_with(srv, mx, "during-1", published) == "s1"
    ddir = inst.config()["dkim_dir"]
    for f in os.listdir(ddir):
        st = os.stat(os.path.join(ddir, f))
        assert st.st_uid == pwd.getpwnam(inst.config()["user"]).pw_uid, \
            "%s is not the server's: %s" % (
            f, os.popen("ls -la " + ddir).read())
    # a second first step is refused while one is under way
    cp = inst.run("dkim", "rotate", DOMAIN, "--selector", "s9", check=False)
    assert cp.returncode == 1 and "already being rotated to selector s2" in cp.stderr, cp.stderr

    # step 2 refused while the record is missing, or carries another key
    other = fields(inst.run("dkim", "keygen", "other." + DOMAIN, "--selector", "s2"))
    for records, says in ((["s1._domainkey.%s. TXT %s" % (DOMAIN, txt(first["value"]))],
                           "is not in DNS"),
                          (["s2._domainkey.%s. TXT %s" % (DOMAIN, txt(other["value"]))],
                           "is in DNS with another key")):
        ns = dns_util.LocalDNS(tmp_path / says.replace(" ", "-"), records)
        try:
            cp = inst.run("-o", "dns_resolver=" + ns.resolver, "dkim", "rotate", DOMAIN,
                          check=False)
        finally:
            ns.stop()
        assert cp.returncode == 1, cp
        assert "s2._domainkey.%s %s" % (DOMAIN, says) in cp.stderr, cp.stderr
        assert sent_with(srv, mx, "still-s1-" + says[6:9], published) == "s1"

    # published: the switch, the old record still listed by petrel dns
    ns = dns_util.LocalDNS(tmp_path / "both", [
        "s1._domainkey.%s. TXT %s" % (DOMAIN, txt(first["value"])),
        "s2._domainkey.%s. TXT %s" % (DOMAIN, txt(nxt["value"]))])
    try:
        sw = fields(inst.run("-o", "dns_resolver=" + ns.resolver, "dkim", "rotate", DOMAIN))
    finally:
        ns.stop()
    assert sw == {"signing": "s2", "retiring": "s1"}, sw
    published[nxt["name"]] = nxt["value"]
    assert sent_with(srv, mx, "after-switch", published) == "s2"
    assert dns_names(inst) == ["s1", "s2"]

    # step 3: not before the overlap is over, unless forced
    cp = inst.run("dkim", "rotate", DOMAIN, check=False)
    assert cp.returncode == 1 and "keep its record until" in cp.stderr, cp.stderr
    assert dns_names(inst) == ["s1", "s2"]
    done = fields(inst.run("dkim", "rotate", DOMAIN, "--force"))
    assert done == {"signing": "s2", "retired": "s1"}, done
    assert dns_names(inst) == ["s2"]
    del published[first["name"]]
    assert sent_with(srv, mx, "after-retire", published) == "s2"
    assert "Permission denied" not in srv.log(), srv.log()
    left = sorted(f for f in os.listdir(ddir) if f.startswith(DOMAIN))
    assert left == [DOMAIN + ".selector", DOMAIN + "@s2.pem"], left


def test_keygen_ends_a_rotation(out_instance):
    inst = out_instance
    inst.run("dkim", "keygen", "example.test", "--selector", "a1")
    inst.run("dkim", "rotate", "example.test", "--selector", "a2")
    assert dns_names_of(inst, "example.test") == ["a1", "a2"]
    inst.run("dkim", "keygen", "example.test", "--selector", "a3")
    assert dns_names_of(inst, "example.test") == ["a3"]
    ddir = inst.config()["dkim_dir"]
    assert sorted(f for f in os.listdir(ddir) if f.startswith("example.test")) == [
        "example.test.pem", "example.test.selector"]


def dns_names_of(inst, domain):
    out = inst.run("-o", "hostname=mx.example.test", "dns", domain).stdout
    return sorted(set(re.findall(r"^(\S+)\._domainkey\.", out, re.M)))


@pytest.mark.parametrize("args, says", [
    (("rotate", "nokey.test"), "nokey.test has no DKIM key: petrel dkim keygen nokey.test"),
    (("rotate", "example.test", "--selector", "a.b"), "'a.b' is not a valid selector"),
    (("rotate", "example.test", "--selector", "k1"), "selector k1 already signs"),
    (("rotate", "bad..domain"), "'bad..domain' is not a valid domain name"),
    (("turn", "example.test"), "usage: petrel dkim keygen"),
])
def test_rotate_errors(out_instance, args, says):
    inst = out_instance
    inst.run("dkim", "keygen", "example.test", "--selector", "k1")
    cp = inst.run("dkim", *args, check=False)
    assert cp.returncode == 1, cp
    assert says in cp.stderr, cp.stderr
    assert cp.stderr.count("\n") == 1, cp.stderr
