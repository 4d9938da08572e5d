"""Schema presets (`schema = postfix-howto | exim-howto | postfixadmin`,
docs/migration.md): one key gives every query_* default for a stack's stock
database layout; explicit query_* keys still win; postfix-howto keeps the
defaults of before, byte for byte. The layouts are made here as each stack
makes them (the Exim howto's users and domains tables, PostfixAdmin 3.3's
domain, mailbox, alias and alias_domain tables), on SQLite and MariaDB."""

import os

from conftest import DOMAIN, assert_error, assert_ok, describe, parse_conf, run_petrel, table
from smtp_util import read_new

DES_HASH = "jnk.l3QByZvdk"   # the Exim howto's ENCRYPT('lrepsak')

# SPEC section 1: the defaults of a new instance (schema = postfix-howto)
POSTFIX_HOWTO = {
    "query_domain": "SELECT transport FROM transport WHERE domain = :domain",
    "query_alias": "SELECT goto FROM virtual WHERE address = :address",
    "query_user": "SELECT id, address, crypt, name, uid, gid, home, maildir FROM users "
                  "WHERE address = :address",
    "query_login": "SELECT id, address, crypt, name, uid, gid, home, maildir FROM users "
                   "WHERE (id = :login OR address = :login) AND imapok = 1 AND bool1 = 1 "
                   "AND bool2 = 1",
    "query_quota": "SELECT quota FROM users WHERE address = :address",
}

EXIM_TABLES = [
    "DROP TABLE transport", "DROP TABLE virtual", "DROP TABLE users",
    "CREATE TABLE users (id VARCHAR(128) NOT NULL DEFAULT '' PRIMARY KEY, "
    "crypt VARCHAR(128) NOT NULL DEFAULT '', clear VARCHAR(128) NOT NULL DEFAULT '', "
    "name VARCHAR(128) NOT NULL DEFAULT '', uid INT NOT NULL DEFAULT 65534, "
    "gid INT NOT NULL DEFAULT 65534, home VARCHAR(255) NOT NULL DEFAULT '', "
    "maildir VARCHAR(255) NOT NULL DEFAULT '', quota VARCHAR(255) NOT NULL DEFAULT '')",
    "CREATE TABLE domains (domain VARCHAR(128) NOT NULL DEFAULT '' PRIMARY KEY)",
]

PFA_TABLES = [
    "DROP TABLE transport", "DROP TABLE virtual", "DROP TABLE users",
    "CREATE TABLE domain (domain VARCHAR(255) NOT NULL PRIMARY KEY, "
    "description VARCHAR(255) NOT NULL DEFAULT '', aliases INT NOT NULL DEFAULT 0, "
    "mailboxes INT NOT NULL DEFAULT 0, maxquota BIGINT NOT NULL DEFAULT 0, "
    "quota BIGINT NOT NULL DEFAULT 0, transport VARCHAR(255) DEFAULT NULL, "
    "backupmx SMALLINT NOT NULL DEFAULT 0, active SMALLINT NOT NULL DEFAULT 1)",
    "CREATE TABLE mailbox (username VARCHAR(255) NOT NULL PRIMARY KEY, "
    "password VARCHAR(255) NOT NULL, name VARCHAR(255) NOT NULL DEFAULT '', "
    "maildir VARCHAR(255) NOT NULL, quota BIGINT NOT NULL DEFAULT 0, "
    "local_part VARCHAR(255) NOT NULL, domain VARCHAR(255) NOT NULL, "
    "active SMALLINT NOT NULL DEFAULT 1)",
    "CREATE TABLE alias (address VARCHAR(255) NOT NULL PRIMARY KEY, goto TEXT NOT NULL, "
    "domain VARCHAR(255) NOT NULL, active SMALLINT NOT NULL DEFAULT 1)",
    "CREATE TABLE alias_domain (alias_domain VARCHAR(255) NOT NULL PRIMARY KEY, "
    "target_domain VARCHAR(255) NOT NULL, active SMALLINT NOT NULL DEFAULT 1)",
]


def use_schema(inst, schema, extra=()):
    """The instance's petrel.conf without its query_* lines (init writes every
    key), with `schema = ...` and extra "key = value" lines."""
    keep = [l for l in open(inst.conf).read().splitlines()
            if not l.startswith("query_") and not l.startswith("schema")]
    with open(inst.conf, "w") as f:
        f.write("\n".join(keep + ["schema = " + schema] + list(extra)) + "\n")


def hash_of(inst, password):
    cp = run_petrel(inst.bin, ["hash"], input=password + "\n")
    assert_ok(cp)
    return cp.stdout.strip()


def exim_layout(inst):
    for s in EXIM_TABLES:
        inst.sql(s)
    q = inst.quote
    rows = [("kasperl@example.com", DES_HASH, "", "Kasper L", "example.com/kasperl/", "1000000S,3C"),
            ("clr@example.com", "", "secret", "Clear", "example.com/clr/", ""),
            ("fw@example.com", "", "", "Forward", "kasperl@example.com", "")]
    for i, c, cl, n, md, quota in rows:
        inst.sql("INSERT INTO users (id, crypt, clear, name, uid, gid, home, maildir, quota) "
                 "VALUES (%s, %s, %s, %s, 1000, 1000, '', %s, %s)"
                 % (q(i), q(c), q(cl), q(n), q(md), q(quota)))
    inst.sql("INSERT INTO domains (domain) VALUES ('example.com')")
    use_schema(inst, "exim-howto")


def pfa_layout(inst):
    for s in PFA_TABLES:
        inst.sql(s)
    q = inst.quote
    for d, transport, backup, active in (("ALL", None, 0, 1), ("example.com", "virtual", 0, 1),
                                          ("alias.test", "virtual", 0, 1),
                                          ("backup.test", "", 1, 1), ("off.test", "virtual", 0, 0)):
        inst.sql("INSERT INTO domain (domain, transport, backupmx, active) VALUES (%s, %s, %d, %d)"
                 % (q(d), "NULL" if transport is None else q(transport), backup, active))
    pw = hash_of(inst, "pw")
    for user, active, quota in (("kasper", 1, 5000000), ("off", 0, 0)):
        addr = user + "@example.com"
        inst.sql("INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain, "
                 "active) VALUES (%s, %s, 'K', %s, %d, %s, 'example.com', %d)"
                 % (q(addr), q(pw), q("example.com/%s/" % user), quota, q(user), active))
        # PostfixAdmin makes an alias to itself for every mailbox
        inst.sql("INSERT INTO alias (address, goto, domain, active) VALUES (%s, %s, 'example.com', %d)"
                 % (q(addr), q(addr), active))
    for a, g, active in (("info@example.com", "kasper@example.com", 1),
                         ("old@example.com", "kasper@example.com", 0),
                         ("@example.com", "kasper@example.com", 1)):
        inst.sql("INSERT INTO alias (address, goto, domain, active) VALUES (%s, %s, 'example.com', %d)"
                 % (q(a), q(g), active))
    inst.sql("INSERT INTO alias_domain (alias_domain, target_domain, active) "
             "VALUES ('alias.test', 'example.com', 1)")
    use_schema(inst, "postfixadmin")


def auth(inst, login, password):
    cp = inst.run("user", "auth", login, input=password + "\n", check=False)
    assert cp.returncode in (0, 1), describe(cp)
    return cp.returncode == 0


def rcpt_codes(srv, rcpts):
    codes = {}
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@remote.test>", 250)
        for r in rcpts:
            codes[r] = c.cmd("RCPT TO:<%s>" % r).code
        c.expect("RSET", 250)
        c.expect("QUIT", 221)
    return codes


def send(srv, rcpt, text):
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@remote.test>", 250)
        c.expect("RCPT TO:<%s>" % rcpt, 250)
        c.expect("DATA", 354)
        c.send(("Subject: %s\r\n\r\n%s\r\n.\r\n" % (text, text)).encode())
        assert c.reply().code == 250
        c.expect("QUIT", 221)


# ---------------------------------------------------------------- postfix-howto stays as it was


def test_postfix_howto_defaults_unchanged(petrel_bin, tmp_path):
    """A new instance writes schema = postfix-howto and the SPEC's queries, as before."""
    d = tmp_path / "n"
    assert_ok(run_petrel(petrel_bin, ["init", "--dir", str(d), "--domain", DOMAIN], cwd=str(tmp_path)))
    conf = parse_conf(str(d / "petrel.conf"))
    assert conf["schema"] == "postfix-howto"
    for k, v in POSTFIX_HOWTO.items():
        assert conf[k] == v, (k, conf[k])


def test_preset_written_by_init(petrel_bin, tmp_path):
    """-o schema=... at init writes that preset's queries (the same text a
    file without query_* lines gets)."""
    d = tmp_path / "p"
    assert_ok(run_petrel(petrel_bin, ["-o", "schema=exim-howto", "init", "--dir", str(d)],
                         cwd=str(tmp_path)))
    conf = parse_conf(str(d / "petrel.conf"))
    assert conf["schema"] == "exim-howto"
    assert conf["query_user"] == ("SELECT id, id, crypt, name, uid, gid, home, maildir FROM users "
                                  "WHERE id = :address"), conf["query_user"]
    assert conf["query_alias"] == ""
    for k in POSTFIX_HOWTO:
        assert conf[k] != POSTFIX_HOWTO[k], k


def test_bad_schema_value(sqlite_instance):
    cp = sqlite_instance.run("-o", "schema=courier", "check", check=False)
    assert cp.returncode == 1 and "schema must be one of" in cp.stderr, describe(cp)


# ---------------------------------------------------------------- exim-howto


def test_exim_howto_preset(instance, smtp_start):
    exim_layout(instance)
    assert_ok(instance.run("check", check=False))
    assert auth(instance, "kasperl@example.com", "lrepsak")
    assert not auth(instance, "kasperl@example.com", "lrepsaK")
    assert auth(instance, "clr@example.com", "secret"), "the clear column logs in"
    assert not auth(instance, "fw@example.com", "")
    srv = smtp_start(instance)
    codes = rcpt_codes(srv, ["kasperl@example.com", "fw@example.com", "nobody@example.com",
                             "x@" + DOMAIN])
    assert codes == {"kasperl@example.com": 250, "fw@example.com": 250,
                     "nobody@example.com": 550, "x@" + DOMAIN: 554}, codes
    send(srv, "fw@example.com", "redirected")
    got = read_new(instance, "kasperl@example.com")
    assert len(got) == 1 and b"redirected" in got[0], got


def test_exim_howto_explicit_query_wins(instance):
    exim_layout(instance)
    cp = instance.run("-o", "query_domain=SELECT transport FROM transport WHERE domain = :domain",
                      "check", check=False)
    assert cp.returncode == 1 and "query_domain" in cp.stderr, describe(cp)
    # the file's own line wins too
    with open(instance.conf, "a") as f:
        f.write("query_login = SELECT id, id, crypt, name, uid, gid, home, maildir FROM users "
                "WHERE id = :login AND 1 = 0\n")
    assert not auth(instance, "kasperl@example.com", "lrepsak")


# ---------------------------------------------------------------- postfixadmin


def test_postfixadmin_preset(instance, smtp_start):
    pfa_layout(instance)
    cp = instance.run("check", check=False)
    assert_ok(cp)
    assert auth(instance, "kasper@example.com", "pw")
    assert not auth(instance, "kasper@example.com", "px")
    assert not auth(instance, "off@example.com", "pw"), "inactive mailbox"
    assert not auth(instance, "kasper@alias.test", "pw")
    srv = smtp_start(instance)
    rc = ["kasper@example.com", "kasper@alias.test", "info@example.com", "info@alias.test",
          "anything@example.com", "x@backup.test", "x@off.test"]
    codes = rcpt_codes(srv, rc)
    assert codes == {"kasper@example.com": 250, "kasper@alias.test": 250,
                     "info@example.com": 250, "info@alias.test": 250,
                     "anything@example.com": 250,   # the catch-all
                     "x@backup.test": 554, "x@off.test": 554}, codes
    send(srv, "kasper@alias.test", "through the alias domain")
    got = read_new(instance, "kasper@example.com")
    assert len(got) == 1 and b"through the alias domain" in got[0], got
    assert os.path.isdir(os.path.join(instance.mail_root, "example.com", "kasper", "new"))
    assert not os.path.exists(os.path.join(instance.mail_root, "alias.test"))


def test_postfixadmin_catchall_postfix_order(sqlite_instance, smtp_start):
    """With catchall_order = postfix, PostfixAdmin's alias of every mailbox
    to itself keeps the mailbox from the catch-all, as on the Postfix host;
    an inactive alias is no alias."""
    inst = sqlite_instance
    pfa_layout(inst)
    inst.sql("INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain, "
             "active) VALUES ('noalias@example.com', '', '', 'example.com/noalias/', 0, 'noalias', "
             "'example.com', 1)")
    srv = smtp_start(inst, ["catchall_order=postfix"])
    send(srv, "kasper@example.com", "own")
    send(srv, "noalias@example.com", "caught")
    send(srv, "old@example.com", "inactive alias")
    assert len(read_new(inst, "kasper@example.com")) == 3
    assert read_new(inst, "noalias@example.com") == []


# ---------------------------------------------------------------- the admin commands follow the layout


def test_admin_commands_on_presets(instance):
    """Listings read the configured layout; writes, which know only the
    Postfix howto's tables, refuse with one line instead of an SQL error."""
    exim_layout(instance)
    assert table(instance.run("domain", "list").stdout) == [["example.com", "virtual:"]]
    users = {r[0]: r for r in table(instance.run("user", "list").stdout)}
    assert sorted(users) == ["clr@example.com", "fw@example.com", "kasperl@example.com"], users
    assert users["kasperl@example.com"][6] == "example.com/kasperl/", users
    assert users["kasperl@example.com"][7] == "1000000S,3C", users
    assert table(instance.run("user", "show", "kasperl@example.com").stdout)[0][2] == "Kasper L"
    assert instance.run("alias", "list").stdout == ""
    assert instance.json("alias", "list", "--json") == []
    for args in (("user", "add", "new@example.com"), ("user", "del", "kasperl@example.com"),
                 ("alias", "add", "a@example.com", "kasperl@example.com"),
                 ("domain", "add", "new.test"), ("domain", "del", "example.com")):
        assert_error(instance.run(*args, check=False), "schema = exim-howto")
    assert instance.sql("SELECT count(*) FROM users") == [("3",)]


def test_admin_listings_postfixadmin(instance):
    pfa_layout(instance)
    assert table(instance.run("domain", "list").stdout) == [["alias.test", "virtual"],
                                                           ["example.com", "virtual"]]
    js = instance.json("user", "list", "--json")
    assert [(u["address"], u["login"], u["quota"]) for u in js] == [
        ("kasper@example.com", True, 5000000), ("off@example.com", False, 0)], js
    aliases = table(instance.run("alias", "list", "example.com").stdout)
    assert ["info@example.com", "kasper@example.com"] in aliases, aliases
    assert not any(a[0] == "old@example.com" for a in aliases), "inactive"
    assert ["@example.com", "kasper@example.com"] in aliases, aliases
    assert_error(instance.run("user", "passwd", "kasper@example.com", input="x\n", check=False),
                 "schema = postfixadmin")


def test_postfixadmin_dovecot_scheme_prefix(sqlite_instance):
    """PostfixAdmin's dovecot:SHA512-CRYPT stores {SHA512-CRYPT}$6$...: the
    prefix is skipped, the crypt(3) string decides."""
    inst = sqlite_instance
    pfa_layout(inst)
    h = run_petrel(inst.bin, ["hash", "--scheme", "sha512"], input="dpw\n").stdout.strip()
    assert h.startswith("$6$"), h
    inst.sql("UPDATE mailbox SET password = '{SHA512-CRYPT}%s' WHERE username = 'kasper@example.com'" % h)
    assert auth(inst, "kasper@example.com", "dpw")
    assert not auth(inst, "kasper@example.com", "pw")
    inst.sql("UPDATE mailbox SET password = '{PLAIN}dpw' WHERE username = 'kasper@example.com'")
    assert not auth(inst, "kasper@example.com", "dpw")


def test_check_names_the_layout_found(sqlite_instance):
    """check with the postfix-howto schema on PostfixAdmin's tables: the
    missing tables, and the layout that is there."""
    inst = sqlite_instance
    pfa_layout(inst)
    cp = inst.run("-o", "schema=postfix-howto", "check", check=False)
    assert cp.returncode == 1, describe(cp)
    assert "table transport is missing" in cp.stderr, describe(cp)
    assert "the database has the postfixadmin tables: set schema = postfixadmin" in cp.stderr, \
        describe(cp)
    assert_ok(inst.run("check", check=False))
