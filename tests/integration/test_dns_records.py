"""`petrel dns DOMAIN`: the records a hosted domain publishes. The output
loads as a zone in NSD's own checker, the DKIM key is the one on disk, the
TLSA record is the SHA-256 of the served certificate's public key, SRV
records follow the configured listeners (RFC 6186: "." for a service that
is off), and records outside the domain's zone are left commented out."""

import base64
import hashlib
import json
import os
import re
import subprocess

import pytest

from conftest import assert_error

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
