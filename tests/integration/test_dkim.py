"""DKIM signing of outgoing mail (RFC 6376): `petrel dkim keygen`, then mail
that an authenticated user sends to a remote recipient arrives at the FakeMX
signed (rsa-sha256, relaxed/relaxed) for the envelope sender's domain, and
python3-dkim verifies it with the key keygen printed."""

import os
import re
import stat

import pytest

from mx_util import (ALICE, PASSWORD, add_relay_domain, instance_cert, make_message,
                     wait_queue_empty, wire)

try:
    import dkim
except ImportError:  # Debian package python3-dkim
    dkim = None


@pytest.fixture(scope="module")
def dkimpy():
    if dkim is None:
        pytest.fail("python3-dkim is not installed (apt-get install python3-dkim)")
    return dkim


def keygen(inst, domain, *extra):
    cp = inst.run("dkim", "keygen", domain, *extra)
    out = {}
    for line in cp.stdout.splitlines():
        if "\t" in line:
            k, v = line.split("\t", 1)
            out[k] = v
    return out


def dnsfunc_for(records):
    """records: {"s1._domainkey.example.test": "v=DKIM1; ..."}."""
    asked = []

    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        asked.append(n)
        v = records.get(n.rstrip(".").lower())
        return v.encode() if v is not None else None

    dnsfunc.asked = asked
    return dnsfunc


def sig_tags(data):
    m = re.search(rb"(?mi)^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", data)
    assert m, "no DKIM-Signature in:\n%r" % data[:800]
    value = re.sub(rb"\s+", b"", m.group(1)).decode()
    return dict(t.split("=", 1) for t in value.split(";") if "=" in t)


# a body that exercises dot-stuffing, trailing white space and empty lines
BODY = (b"Hello Bob,\r\n"
        b".a dot-stuffed line\r\n"
        b"..\r\n"
        b"trailing spaces   \r\n"
        b"\twith\ttabs\r\n"
        b"\r\n"
        b"-- \r\n"
        b"Alice\r\n"
        b"\r\n\r\n")


def test_keygen_output(out_instance):
    inst = out_instance
    k = keygen(inst, "example.test", "--selector", "s1")
    assert k["selector"] == "s1"
    assert k["name"] == "s1._domainkey.example.test"
    assert re.match(r"^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$", k["value"]), k["value"]
    assert "s1._domainkey.example.test" in k["record"] and "p=" in k["record"], k["record"]
    ddir = inst.config()["dkim_dir"]
    pem = os.path.join(ddir, "example.test.pem")
    with open(pem) as f:
        assert "PRIVATE KEY-----" in f.read()
    assert stat.S_IMODE(os.stat(pem).st_mode) & 0o077 == 0, "the private key is not private"
    with open(os.path.join(ddir, "example.test.selector")) as f:
        assert f.read().strip() == "s1"


def send_signed(inst, srv, mx, subject, body=BODY, extra=b""):
    original = make_message(subject, body, to="bob@relay.test",
                            extra=b"Message-ID: <%s@client.test>\r\n" % subject.encode()
                                  + b"Date: Wed, 04 Jan 2023 12:00:00 +0000\r\n"
                                  + b"X-Long: a folded\r\n   header   value\r\n" + extra)
    assert srv.submit(ALICE, ALICE, ["bob@relay.test"], wire(original)).code == 250
    got = mx.wait_messages(1)
    assert len(got) == 1, "nothing arrived\nlog:\n%s" % srv.log()
    return got[0], original


def test_signature_verifies(dkimpy, out_instance, petrel_start, fake_mx):
    inst = out_instance
    k = keygen(inst, "example.test", "--selector", "s1")
    mx = fake_mx(starttls=True, cert=instance_cert(inst))
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst)
    t, original = send_signed(inst, srv, mx, "signed")
    data = t.data
    assert data.endswith(original)
    tags = sig_tags(data)
    assert tags.get("v") == "1", tags
    assert tags.get("a") == "rsa-sha256", tags
    assert tags.get("c") == "relaxed/relaxed", tags
    assert tags.get("d") == "example.test", tags
    assert tags.get("s") == "s1", tags
    signed = [h.lower() for h in tags.get("h", "").split(":")]
    for h in ("from", "to", "subject", "date", "message-id"):
        assert h in signed, "%s not signed: h=%s" % (h, tags.get("h"))
    assert "l" not in tags, "no body length limit (l=) wanted"
    dns = dnsfunc_for({k["name"]: k["value"]})
    assert dkim.verify(data, dnsfunc=dns), "python3-dkim does not verify the signature"
    assert any(n.rstrip(".") == "s1._domainkey.example.test" for n in dns.asked), dns.asked
    # relaxed/relaxed: white space changes inside lines / at the end do not matter
    relaxed = data.replace(b"trailing spaces   \r\n", b"trailing  spaces\r\n")
    assert relaxed != data
    assert dkim.verify(relaxed, dnsfunc=dns), "relaxed body canonicalisation"
    # tampering is detected
    tampered_body = data.replace(b"Hello Bob,", b"Hello Eve,")
    assert tampered_body != data
    assert not dkim.verify(tampered_body, dnsfunc=dns), "a changed body still verifies"
    appended = data + b"P.S. extra line\r\n"
    assert not dkim.verify(appended, dnsfunc=dns), "an appended line still verifies"
    tampered_head = data.replace(b"Subject: signed", b"Subject: SIGNED!")
    assert tampered_head != data
    assert not dkim.verify(tampered_head, dnsfunc=dns), "a changed Subject still verifies"
    # another key for the same name does not verify it
    other = keygen(inst, "other.test", "--selector", "s1")
    assert not dkim.verify(data, dnsfunc=dnsfunc_for({k["name"]: other["value"]}))


def test_large_message_signature_verifies(dkimpy, out_instance, petrel_start, fake_mx):
    """More than 1 MB (spooled to disk, signed in 64 KB pieces) with a header
    section of more than 64 KB (a long folded Cc: the first piece ends inside
    it), the From/To/Subject fields after it."""
    inst = out_instance
    k = keygen(inst, "example.test", "--selector", "big")
    mx = fake_mx()
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst)
    cc = b"Cc: " + b",\r\n\t".join(b"<user%05d@example.net>" % i for i in range(3500)) + b"\r\n"
    body = b"".join(b"%07d .. line of the body\r\n.%s\r\n" % (i, b"z" * (i % 70))
                    for i in range(20000))
    original = (cc + b"From: <alice@example.test>\r\nTo: <bob@relay.test>\r\n"
                b"Subject: big and signed\r\n\r\n" + body)
    assert len(cc) > 65536 and len(body) > 1100000
    r = srv.submit(ALICE, ALICE, ["bob@relay.test"], wire(original))
    assert r.code == 250, r
    got = mx.wait_messages(1, timeout=40)
    assert len(got) == 1, srv.log()
    data = got[0].data
    assert data.endswith(original)
    tags = sig_tags(data)
    assert tags.get("d") == "example.test" and tags.get("s") == "big", tags
    signed = [h.lower() for h in tags.get("h", "").split(":")]
    assert "from" in signed and "cc" in signed, tags.get("h")
    dns = dnsfunc_for({k["name"]: k["value"]})
    assert dkim.verify(data, dnsfunc=dns), "the signature of a large message does not verify"
    assert not dkim.verify(data.replace(b"<user01234@", b"<user01235@"), dnsfunc=dns)
    assert not dkim.verify(data.replace(b"\r\n0012345 ..", b"\r\n0012345 ,."), dnsfunc=dns)


def test_from_is_always_signed(dkimpy, out_instance, petrel_start, fake_mx):
    """RFC 6376 5.4: the From field MUST be signed (a verifier ignores a
    signature whose h= lacks it, 6.1.1), also in a message with many header
    fields (such as one relayed through Exchange: dozens of long
    X-MS-Exchange-* names) before From."""
    inst = out_instance
    k = keygen(inst, "example.test", "--selector", "s1")
    mx = fake_mx()
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst)
    extra = b"".join(b"X-MS-Exchange-Organization-Test-%04d: value %d\r\n" % (i, i)
                     for i in range(120))
    original = extra + make_message("many header fields", to="bob@relay.test")
    assert srv.submit(ALICE, ALICE, ["bob@relay.test"], wire(original)).code == 250
    got = mx.wait_messages(1)
    assert len(got) == 1, srv.log()
    data = got[0].data
    tags = sig_tags(data)
    signed = [h.lower() for h in tags.get("h", "").split(":")]
    for h in ("from", "to", "subject"):
        assert h in signed, "%s not signed; h= has %d names, %d bytes, ends %r" % (
            h, len(signed), len(tags.get("h", "")), signed[-3:])
    assert dkim.verify(data, dnsfunc=dnsfunc_for({k["name"]: k["value"]}))


def test_unsigned_without_key_or_auth(dkimpy, out_instance, petrel_start, fake_mx):
    """No key for the sender's domain: no signature. Mail that did not come
    from an authenticated user (the MX port) is never signed, even with a
    sender in a domain that has a key."""
    inst = out_instance
    keygen(inst, "example.test", "--selector", "s1")
    inst.run("domain", "add", "nokey.test")
    inst.add_user("carol@nokey.test", PASSWORD)
    mx = fake_mx()
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst)
    m1 = make_message("no key", sender="carol@nokey.test")
    assert srv.submit("carol@nokey.test", "carol@nokey.test", ["x@relay.test"],
                      wire(m1)).code == 250
    with srv.mx() as c:
        m2 = make_message("from the mx port")
        assert c.send_message(ALICE, ["y@relay.test"], wire(m2), ehlo="client.test").code == 250
    got = mx.wait_messages(2)
    assert len(got) == 2, srv.log()
    for t in got:
        assert not re.search(rb"(?mi)^DKIM-Signature:", t.data), t.data[:600]
    assert wait_queue_empty(inst)


def test_keygen_key_usable_by_the_server(dkimpy, mail_user_instance, petrel_start, fake_mx):
    """`petrel dkim keygen` run by root on an instance that runs as `mail`: the
    server must be able to read the key (and so sign)."""
    inst = mail_user_instance
    k = keygen(inst, "example.test", "--selector", "sel2024")
    mx = fake_mx()
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst)
    t, original = send_signed(inst, srv, mx, "signed-as-mail")
    assert "running as mail" in srv.log(), srv.log()
    assert "Permission denied" not in srv.log(), (
        "the worker (user mail) cannot read the key keygen wrote:\n%s\n%s"
        % (os.popen("ls -la %s" % inst.config()["dkim_dir"]).read(), srv.log()))
    assert dkim.verify(t.data, dnsfunc=dnsfunc_for({k["name"]: k["value"]})), t.data[:800]
