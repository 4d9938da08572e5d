"""petrel init: a new instance, idempotent."""

import os
import stat
import subprocess

from conftest import DOMAIN, assert_ok, make_instance, run_petrel, table

# each instance here makes its own self-signed pair, as a new user's init does
FRESH_TLS = True


def openssl(*args):
    return subprocess.run(["openssl"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=30)


def test_init_creates_instance(instance):
    d = instance.dir
    assert instance.init_result.stdout.strip(), "init should print what it created"
    assert os.path.isfile(instance.conf)
    conf = instance.config()
    assert os.path.isdir(os.path.join(d, "mail")), os.listdir(d)
    assert os.path.realpath(instance.mail_root) == os.path.realpath(os.path.join(d, "mail"))
    cert = conf.get("tls_cert") or os.path.join(d, "tls", "cert.pem")
    key = conf.get("tls_key") or os.path.join(d, "tls", "key.pem")
    assert os.path.realpath(cert) == os.path.realpath(os.path.join(d, "tls", "cert.pem"))
    assert os.path.realpath(key) == os.path.realpath(os.path.join(d, "tls", "key.pem"))
    r = openssl("x509", "-noout", "-in", os.path.join(d, "tls", "cert.pem"))
    assert r.returncode == 0, r.stderr
    r = openssl("pkey", "-noout", "-in", os.path.join(d, "tls", "key.pem"))
    assert r.returncode == 0, r.stderr
    if instance.backend == "sqlite":
        assert os.path.isfile(os.path.join(d, "petrel.db"))
        assert conf.get("database") in ("sqlite:" + os.path.join(d, "petrel.db"), "sqlite:petrel.db"), conf
    else:
        assert conf.get("database") == instance.url, conf
        assert not os.path.exists(os.path.join(d, "petrel.db")), \
            "init with a MariaDB database should not create an SQLite file"
    # the schema is there and the --domain is hosted
    rows = table(instance.run("domain", "list").stdout)
    assert [DOMAIN, "virtual:"] in rows, rows
    assert instance.sql("SELECT transport FROM transport WHERE domain = '%s'" % DOMAIN) == [("virtual:",)]
    # every default key from the spec is written and check passes
    for k in ("hostname", "database", "mail_root", "tls_cert", "tls_key", "smtp_listen",
              "imap_listen", "pop3_listen", "message_size_limit", "query_quota"):
        assert k in conf, "init should write %s to petrel.conf:\n%s" % (k, open(instance.conf).read())
    assert conf["query_quota"], "init creates a quota column and sets query_quota"
    assert_ok(instance.run("check", check=False))


def test_init_private_key_not_world_readable(sqlite_instance):
    st = os.stat(os.path.join(sqlite_instance.dir, "tls", "key.pem"))
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0, oct(st.st_mode)


def test_init_cert_is_self_signed_for_hostname(sqlite_instance):
    conf = sqlite_instance.config()
    r = openssl("x509", "-noout", "-subject", "-ext", "subjectAltName",
                "-in", os.path.join(sqlite_instance.dir, "tls", "cert.pem"))
    assert r.returncode == 0, r.stderr
    assert conf["hostname"] in r.stdout, (conf["hostname"], r.stdout)


def test_init_is_idempotent(instance):
    d = instance.dir
    with open(instance.conf, "rb") as f:
        conf_before = f.read()
    with open(os.path.join(d, "tls", "key.pem"), "rb") as f:
        key_before = f.read()
    with open(os.path.join(d, "tls", "cert.pem"), "rb") as f:
        cert_before = f.read()
    instance.add_user("alice@" + DOMAIN, "secret")
    instance.run("alias", "add", "info@" + DOMAIN, "alice@" + DOMAIN)
    # second init, the same way as the first
    args = []
    if instance.backend == "mariadb":
        args += ["-o", "database=" + instance.url]
    args += ["init", "--dir", d, "--domain", DOMAIN]
    cp = run_petrel(instance.bin, args, cwd=d)
    assert_ok(cp)
    with open(instance.conf, "rb") as f:
        assert f.read() == conf_before, "second init must keep petrel.conf"
    with open(os.path.join(d, "tls", "key.pem"), "rb") as f:
        assert f.read() == key_before, "second init must keep the TLS key"
    with open(os.path.join(d, "tls", "cert.pem"), "rb") as f:
        assert f.read() == cert_before, "second init must keep the TLS cert"
    assert instance.user_row("alice@" + DOMAIN) is not None, "user lost by second init"
    assert instance.auth("alice@" + DOMAIN, "secret")
    assert ["info@" + DOMAIN, "alice@" + DOMAIN] in table(instance.run("alias", "list").stdout)
    assert os.path.isdir(os.path.join(instance.mail_root, DOMAIN, "alice", "new"))
    rows = table(instance.run("domain", "list").stdout)
    assert sum(1 for r in rows if r[0] == DOMAIN) == 1, rows


def test_init_idempotent_without_domain_and_in_cwd(petrel_bin, tmp_path):
    """`petrel init` with no --dir uses the current directory."""
    d = tmp_path / "here"
    d.mkdir()
    cp = run_petrel(petrel_bin, ["init"], cwd=str(d))
    assert_ok(cp)
    assert (d / "petrel.conf").is_file()
    assert (d / "petrel.db").is_file()
    assert (d / "tls" / "cert.pem").is_file()
    before = (d / "petrel.conf").read_bytes()
    assert_ok(run_petrel(petrel_bin, ["init"], cwd=str(d)))
    assert (d / "petrel.conf").read_bytes() == before

