"""PostfixAdmin (Debian's postfixadmin package, 3.3) as the web admin over
petrel's database (issue: a Postfix + Dovecot host run with PostfixAdmin,
docs/migration.md "Schema presets").

Everything in the database is made by PostfixAdmin itself, never by SQL
written here: its own upgrade.php (what its setup.php runs) creates its
schema in a database of the session's private MariaDB, and its command
line, postfixadmin-cli, adds the domain, the mailbox (password hashed with
its `encrypt` setting, `md5crypt`: the package's default, written out in
config.local.php), an alias and an alias domain. petrel, started with
`schema = postfixadmin` on that database, then takes PostfixAdmin's
welcome mail (PostfixAdmin sends it over SMTP to petrel's listener),
delivers over SMTP to the mailbox, the alias and the alias domain, and
logs the user in over IMAP and POP3 with the password set through
PostfixAdmin. A mailbox PostfixAdmin deactivates can no longer log in or
receive mail.

PostfixAdmin is run from a copy of its configuration in a temporary
directory (its PHP sources are linked from /usr/share/postfixadmin, its
config.inc.php copied from /etc/postfixadmin with the config.local.php and
dbconfig.inc.php it loads from its own directory): /etc is not touched.
"""

import imaplib
import os
import poplib
import shutil
import smtplib
import subprocess

import pytest

from conftest import assert_ok
from harness import server
from harness.instance import make_instance

PFA = "/usr/share/postfixadmin"
PFA_ETC = "/etc/postfixadmin/config.inc.php"
DOMAIN = "example.com"
USER = "kasper@example.com"
ALIAS = "info@example.com"
PASSWORD = "Kasper-pw42"      # PostfixAdmin's password rules: 2 digits at least
PHP_TIMEOUT = 60


def php(pfa_dir, script, *args, check=True):
    cp = subprocess.run(["php", "-q", os.path.join(pfa_dir, script)] + list(args),
                        cwd=pfa_dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, timeout=PHP_TIMEOUT)
    if check:
        assert cp.returncode == 0, "%s %s: exit %d\n%s\n%s" % (
            script, args, cp.returncode, cp.stdout, cp.stderr)
    return cp


def cli(pfa_dir, *args, check=True):
    return php(pfa_dir, "scripts/postfixadmin-cli.php", *args, check=check)


def php_str(s):
    return "'" + str(s).replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_local_config(pfa_dir, mariadb, db, smtp_port=None):
    """config.local.php, as PostfixAdmin's config.inc.php tells an admin to
    write it (its settings win over config.inc.php's)."""
    conf = {
        "configured": True,
        "database_type": "mysqli",
        "database_host": "127.0.0.1",
        "database_port": str(mariadb.port),
        "database_user": mariadb.USER,
        "database_password": mariadb.password,
        "database_name": db,
        "encrypt": "md5crypt",
        # the test domains are not in the DNS
        "emailcheck_resolve_domain": "NO",
        "admin_email": "postmaster@admin.test",
        "smtp_server": "127.0.0.1",
        "smtp_port": str(smtp_port or 9),
        "smtp_client": "admin.test",
    }
    with open(os.path.join(pfa_dir, "config.local.php"), "w") as f:
        f.write("<?php\n")
        for k, v in conf.items():
            f.write("$CONF[%s] = %s;\n" % (php_str(k), "true" if v is True else php_str(v)))


def make_pfa_dir(base):
    """PostfixAdmin's tree with its own configuration: PHP finds config.inc.php
    (and through it config.local.php and dbconfig.inc.php) next to the
    common.php that includes it, so those and the entry points are copies;
    the rest is linked to the package."""
    d = os.path.join(base, "postfixadmin")
    os.makedirs(os.path.join(d, "public"))
    os.makedirs(os.path.join(d, "scripts"))
    os.makedirs(os.path.join(d, "templates_c"))
    shutil.copy(os.path.join(PFA, "common.php"), d)
    shutil.copy(PFA_ETC, os.path.join(d, "config.inc.php"))
    for f in ("common.php", "upgrade.php"):
        shutil.copy(os.path.join(PFA, "public", f), os.path.join(d, "public"))
    shutil.copy(os.path.join(PFA, "scripts", "postfixadmin-cli.php"), os.path.join(d, "scripts"))
    for x in ("functions.inc.php", "model", "languages", "lib", "templates", "configs"):
        os.symlink(os.path.join(PFA, x), os.path.join(d, x))
    # the package's dbconfig-common file; the values are set in config.local.php
    with open(os.path.join(d, "dbconfig.inc.php"), "w") as f:
        f.write("<?php\n$dbuser='';\n$dbpass='';\n$basepath='';\n$dbname='';\n"
                "$dbserver='';\n$dbport='';\n$dbtype='';\n")
    return d


@pytest.fixture(scope="module")
def pfa(petrel_bin, mariadb, tmp_path_factory):
    assert os.path.isfile(os.path.join(PFA, "scripts", "postfixadmin-cli.php")), \
        "PostfixAdmin is not installed (scripts/install-deps.sh --test installs postfixadmin)"
    base = str(tmp_path_factory.mktemp("pfa"))
    inst = make_instance(petrel_bin, os.path.join(base, "inst"), "mariadb", mariadb=mariadb,
                         domain=None)
    # an empty database: everything in it is PostfixAdmin's
    mariadb.sql(inst.db, "DROP TABLE transport, virtual, users")
    d = make_pfa_dir(base)
    write_local_config(d, mariadb, inst.db)
    out = php(d, "public/upgrade.php").stdout
    assert "updating to version" in out, out
    again = php(d, "public/upgrade.php").stdout
    assert "Database is up to date" in again, again
    keep = [l for l in open(inst.conf).read().splitlines()
            if not l.startswith("query_") and not l.startswith("schema")]
    with open(inst.conf, "w") as f:
        f.write("\n".join(keep + ["schema = postfixadmin", "catchall_order = postfix"]) + "\n")
    srv = server.start(inst, ("smtp", "imap", "pop3"), ("hostname=mx.example.com",
                                                         "auth_fail_delay=100"))
    try:
        write_local_config(d, mariadb, inst.db, smtp_port=srv.port_of("smtp"))
        yield d, inst, srv
    finally:
        srv.stop()
        assert srv.returncode == 0, srv.log()


def maildir_new(inst):
    p = os.path.join(inst.mail_root, DOMAIN, "kasper", "new")
    return sorted(os.listdir(p)) if os.path.isdir(p) else []


def read_all(inst):
    md = os.path.join(inst.mail_root, DOMAIN, "kasper")
    out = []
    for sub in ("new", "cur"):
        p = os.path.join(md, sub)
        for n in sorted(os.listdir(p)) if os.path.isdir(p) else []:
            with open(os.path.join(p, n), "rb") as f:
                out.append(f.read())
    return out


def send(srv, rcpt, subject):
    with smtplib.SMTP("127.0.0.1", srv.port_of("smtp"), local_hostname="client.test",
                      timeout=30) as s:
        s.sendmail("someone@remote.test", [rcpt],
                   "From: someone@remote.test\r\nTo: %s\r\nSubject: %s\r\n\r\nbody\r\n"
                   % (rcpt, subject))


def rcpt_code(srv, rcpt):
    with smtplib.SMTP("127.0.0.1", srv.port_of("smtp"), local_hostname="client.test",
                      timeout=30) as s:
        s.ehlo()
        s.mail("someone@remote.test")
        code, _ = s.rcpt(rcpt)
        s.rset()
    return code


def imap_login(srv, user, password):
    m = imaplib.IMAP4("127.0.0.1", srv.port_of("imap"), timeout=30)
    try:
        m.login(user, password)
    except imaplib.IMAP4.error:
        m.logout()
        return None
    return m


def pop3_login(srv, user, password):
    p = poplib.POP3("127.0.0.1", srv.port_of("pop3"), timeout=30)
    p.user(user)
    try:
        p.pass_(password)
    except poplib.error_proto:
        p.quit()
        return None
    return p


def test_postfixadmin_admin_over_petrel(pfa):
    d, inst, srv = pfa
    # PostfixAdmin's schema, as its upgrade.php made it
    tables = {r[0] for r in inst.mariadb.sql(inst.db, "SHOW TABLES")}
    assert {"domain", "mailbox", "alias", "alias_domain", "config"} <= tables, tables
    assert rcpt_code(srv, USER) != 250        # example.com is not a domain of petrel yet

    # the admin's three steps, through PostfixAdmin's command line
    cp = cli(d, "domain", "add", DOMAIN, "--description", "Example", "--aliases", "10",
             "--mailboxes", "10")
    assert "has been added" in cp.stdout, cp.stdout
    cp = cli(d, "mailbox", "add", USER, "--password", PASSWORD, "--password2", PASSWORD,
             "--name", "Kasper L")
    assert "has been added" in cp.stdout, cp.stdout + cp.stderr
    assert "fsockopen failed" not in cp.stdout + cp.stderr, cp.stdout + cp.stderr
    cp = cli(d, "alias", "add", ALIAS, "--goto", USER)
    assert "has been created" in cp.stdout, cp.stdout
    # and an alias domain: alias.test takes example.com's mail
    cli(d, "domain", "add", "alias.test")
    cp = cli(d, "aliasdomain", "add", "alias.test", "--target-domain", DOMAIN)
    assert "has been created" in cp.stdout, cp.stdout
    # PostfixAdmin refuses what it should (its own checks ran, not ours)
    bad = cli(d, "mailbox", "add", "weak@example.com", "--password", "weak", "--password2", "weak",
              check=False)
    assert bad.returncode != 0 and "password" in (bad.stdout + bad.stderr).lower(), bad.stdout

    rows = inst.mariadb.sql(inst.db, "SELECT username, password, maildir, active FROM mailbox")
    assert len(rows) == 1, rows
    username, hashed, maildir, active = rows[0]
    assert (username, maildir, active) == (USER, "example.com/kasper/", "1"), rows
    assert hashed.startswith("$1$"), hashed   # md5crypt
    assert inst.mariadb.sql(inst.db, "SELECT goto FROM alias WHERE address = %s"
                            % inst.quote(ALIAS)) == [(USER,)]

    # petrel reads PostfixAdmin's tables as they are
    assert_ok(inst.run("check"))

    # PostfixAdmin's welcome mail came in through petrel's SMTP listener
    got = read_all(inst)
    assert len(got) == 1 and b"\nFrom: postmaster@admin.test" in b"\n" + got[0].replace(b"\r\n", b"\n"), got

    send(srv, USER, "to the mailbox")
    send(srv, ALIAS, "to the alias")
    send(srv, "info@alias.test", "to the alias domain")
    got = read_all(inst)
    assert len(got) == 4, [g[:200] for g in got]
    subjects = sorted(l.rstrip(b"\r") for g in got for l in g.split(b"\n")
                      if l.startswith(b"Subject: to "))
    assert subjects == [b"Subject: to the alias", b"Subject: to the alias domain",
                        b"Subject: to the mailbox"], subjects
    assert rcpt_code(srv, "nobody@example.com") == 550

    # the password set through PostfixAdmin logs in, over IMAP and POP3
    m = imap_login(srv, USER, PASSWORD)
    assert m is not None
    typ, data = m.select("INBOX")
    assert typ == "OK" and int(data[0]) == 4, data
    typ, data = m.search(None, "SUBJECT", "domain")
    assert typ == "OK" and len(data[0].split()) == 1, data
    m.logout()
    assert imap_login(srv, USER, PASSWORD + "x") is None
    p = pop3_login(srv, USER, PASSWORD)
    assert p is not None
    count, _size = p.stat()
    assert count == 4, count
    p.quit()
    assert pop3_login(srv, USER, "Kasper-pw43") is None

    # deactivated in PostfixAdmin: no login, no mail
    cli(d, "mailbox", "update", USER, "--active", "0")
    assert inst.mariadb.sql(inst.db, "SELECT active FROM mailbox") == [("0",)]
    assert imap_login(srv, USER, PASSWORD) is None
    assert pop3_login(srv, USER, PASSWORD) is None
    assert rcpt_code(srv, USER) == 550
