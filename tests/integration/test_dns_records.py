"""`petrel dns DOMAIN`: the records a hosted domain publishes. The output
loads as a zone in NSD's own checker, the DKIM key is the one on disk, the
TLSA record is the SHA-256 of the served certificate's public key, SRV
records follow the configured listeners (RFC 6186: "." for a service that
is off), and records outside the domain's zone are left commented out.

`petrel dns check DOMAIN` against Debian's nsd serving that very output (all
ok, exit 0), then a zone with the MX changed and the DMARC record left out
(those two lines, exit 2), and a resolver that does not answer (exit 1).
The check's domain is not under `.test`: libunbound answers that TLD itself
(RFC 6761)."""

import base64
import hashlib
import json
import os
import re
import subprocess

import pytest

import dns_util
from conftest import assert_error
from harness.ports import free_ports

NSD_CHECKZONE = "/usr/sbin/nsd-checkzone"


def dns(inst, *args, host="mail.example.test"):
    return inst.run("-o", "hostname=" + host, "dns", *args)


def spki_der(pem_path, private):
    cmd = ["openssl", "pkey", "-in", pem_path, "-pubout", "-outform", "DER"] if private else \
        ["openssl", "x509", "-in", pem_path, "-pubkey", "-noout"]
    out = subprocess.run(cmd, check=True, capture_output=True).stdout
    if private:
        return out
    return subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=out,
                          check=True, capture_output=True).stdout


def by_name(recs):
    out = {}
    for r in recs:
        out.setdefault((r["name"], r["type"]), []).append(r)
    return out


def test_records_match_keys_and_listeners(sqlite_instance):
    inst = sqlite_instance
    inst.run("dkim", "keygen", "example.test", "--selector", "k1")
    recs = json.loads(dns(inst, "example.test", "--json").stdout)
    r = by_name(recs)
    assert r[("example.test.", "MX")][0]["rdata"] == "10 mail.example.test."
    assert [x["value"] for x in r[("example.test.", "TXT")]] == ["v=spf1 mx -all"]
    cfg = inst.config()
    key = os.path.join(cfg["dkim_dir"], "example.test.pem")
    dkim = r[("k1._domainkey.example.test.", "TXT")][0]
    p = re.fullmatch(r"v=DKIM1; k=rsa; p=([A-Za-z0-9+/=]+)", dkim["value"]).group(1)
    assert base64.b64decode(p) == spki_der(key, True)
    # a TXT string holds at most 255 bytes: the key is split, not cut
    pieces = re.findall(r'"([^"]*)"', dkim["rdata"])
    assert len(pieces) >= 2 and all(len(x) <= 255 for x in pieces)
    assert "".join(pieces) == dkim["value"]
    assert "p=quarantine" in r[("_dmarc.example.test.", "TXT")][0]["value"]
    tlsa = r[("_25._tcp.mail.example.test.", "TLSA")][0]["rdata"]
    want = hashlib.sha256(spki_der(cfg["tls_cert"], False)).hexdigest()
    assert tlsa == "3 1 1 " + want
    # SRV from the listeners; a listener turned off is published as "."
    port = int(cfg["imaps_listen"].rsplit(":", 1)[1])
    assert r[("_imaps._tcp.example.test.", "SRV")][0]["rdata"] == \
        "0 1 %d mail.example.test." % port
    off = json.loads(inst.run("-o", "hostname=mail.example.test", "-o", "pop3_listen=",
                              "dns", "example.test", "--json").stdout)
    assert by_name(off)[("_pop3._tcp.example.test.", "SRV")][0]["rdata"] == "0 0 0 ."
    # ManageSieve's (RFC 5804 1.8), on in a new instance
    assert r[("_sieve._tcp.example.test.", "SRV")][0]["rdata"] == \
        "0 1 %d mail.example.test." % int(cfg["managesieve_listen"].rsplit(":", 1)[1])
    # MTA-STS: the id names the policy, so another MX host gives another id
    sts = r[("_mta-sts.example.test.", "TXT")][0]["value"]
    other = by_name(json.loads(dns(inst, "example.test", "--json",
                                   host="mx2.example.test").stdout))
    assert re.fullmatch(r"v=STSv1; id=[0-9a-f]{20}", sts)
    assert other[("_mta-sts.example.test.", "TXT")][0]["value"] != sts
    assert all(x["in_zone"] for x in recs)


def test_domain_without_dkim_key_gets_dmarc_none(sqlite_instance):
    recs = by_name(json.loads(dns(sqlite_instance, "example.test", "--json").stdout))
    assert not any(t == "TXT" and n.endswith("._domainkey.example.test.") for n, t in recs)
    assert "p=none" in recs[("_dmarc.example.test.", "TXT")][0]["value"]


@pytest.mark.parametrize("host", ["mail.example.test", "mx.hoster.test"])
def test_output_loads_as_a_zone(sqlite_instance, tmp_path, host):
    """The zone-file form, behind an SOA and NS, passes nsd-checkzone; the TLSA
    of a mail host in another zone is commented out, not published here."""
    inst = sqlite_instance
    assert os.path.exists(NSD_CHECKZONE), "nsd is not installed (scripts/install-deps.sh --test)"
    inst.run("dkim", "keygen", "example.test")
    out = dns(inst, "example.test", host=host).stdout
    zone = tmp_path / "example.test.zone"
    zone.write_text("$TTL 3600\n"
                    "example.test. IN SOA ns1.example.test. hostmaster.example.test. "
                    "1 7200 3600 1209600 3600\n"
                    "example.test. IN NS ns1.example.test.\n"
                    "ns1.example.test. IN A 192.0.2.1\n" + out)
    cp = subprocess.run([NSD_CHECKZONE, "example.test", str(zone)], capture_output=True,
                        text=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    tlsa = [l for l in out.splitlines() if "TLSA" in l]
    assert len(tlsa) == 1
    assert tlsa[0].startswith(";") == (host == "mx.hoster.test"), out


@pytest.mark.parametrize("args,needle", [
    (["not a domain"], "not a valid domain name"),
    (["localhost"], "not a valid domain name"),
    (["example.test", "--bogus"], "unknown option"),
    ([], "usage"),
])
def test_bad_arguments(sqlite_instance, args, needle):
    cp = sqlite_instance.run("-o", "hostname=mail.example.test", "dns", *args, check=False)
    assert_error(cp, needle)


def test_short_host_name_is_refused(sqlite_instance):
    cp = sqlite_instance.run("-o", "hostname=mailhost", "dns", "example.test", check=False)
    assert_error(cp, "not a full domain name")


CHECK_DOMAIN = "example.dnscheck"
CHECK_HOST = "mail.example.dnscheck"
SOA = ("$TTL 3600\n"
       "{d}. IN SOA ns1.{d}. hostmaster.{d}. 1 7200 3600 1209600 3600\n"
       "{d}. IN NS ns1.{d}.\n"
       "ns1.{d}. IN A 127.0.0.1\n").format(d=CHECK_DOMAIN)


@pytest.fixture
def check_inst(sqlite_instance):
    inst = sqlite_instance
    inst.run("domain", "add", CHECK_DOMAIN)
    inst.run("dkim", "keygen", CHECK_DOMAIN)
    return inst


def check(inst, resolver, *args):
    return inst.run("-o", "hostname=" + CHECK_HOST, "-o", "dns_resolver=" + resolver,
                    "dns", "check", *args, check=False)


def test_check_against_the_published_zone(check_inst, tmp_path):
    inst = check_inst
    out = dns(inst, CHECK_DOMAIN, host=CHECK_HOST).stdout
    recs = json.loads(dns(inst, CHECK_DOMAIN, "--json", host=CHECK_HOST).stdout)
    # another TXT record beside SPF at the apex is not SPF's business
    ns = dns_util.Nsd(tmp_path, CHECK_DOMAIN,
                      SOA + out + '@ IN TXT "site-verification=abc"\n', "good")
    try:
        cp = check(inst, ns.resolver, CHECK_DOMAIN)
    finally:
        ns.stop()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    lines = cp.stdout.splitlines()
    assert len(lines) == len(recs), cp.stdout
    for line, r in zip(lines, recs):
        assert line.startswith("ok %s %s " % (r["name"], r["type"])), line
    dkim = [l for l in lines if "._domainkey." in l]
    assert len(dkim) == 1 and "v=DKIM1" in dkim[0]

    # the MX points elsewhere, DMARC is not published
    bad = []
    for l in out.splitlines():
        if l.startswith("_dmarc."):
            continue
        if l.startswith(CHECK_DOMAIN + ".\t") and "\tMX\t" in l:
            l = l.replace(CHECK_HOST + ".", "mx.elsewhere.example.")
        bad.append(l)
    assert len(bad) == len(out.splitlines()) - 1
    ns = dns_util.Nsd(tmp_path, CHECK_DOMAIN, SOA + "\n".join(bad) + "\n", "bad")
    try:
        cp = check(inst, ns.resolver, CHECK_DOMAIN.upper())
    finally:
        ns.stop()
    assert cp.returncode == 2, cp.stdout + cp.stderr
    lines = cp.stdout.splitlines()
    assert len(lines) == len(recs)
    notok = [l for l in lines if not l.startswith("ok ")]
    assert notok == [
        "different %s. MX expected 10 %s. found 10 mx.elsewhere.example."
        % (CHECK_DOMAIN, CHECK_HOST),
        'missing _dmarc.%s. TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@%s"'
        % (CHECK_DOMAIN, CHECK_DOMAIN)], cp.stdout


def test_check_errors(check_inst):
    dead = "127.0.0.1:%d" % free_ports(1)[0]
    assert_error(check(check_inst, dead, CHECK_DOMAIN), "no usable answer", "dns_resolver")
    assert_error(check(check_inst, dead, "other.dnscheck"), "not hosted")
    assert_error(check(check_inst, "mail.example.dnscheck:53", CHECK_DOMAIN),
                 "dns_resolver")
    assert_error(check(check_inst, dead), "usage")
