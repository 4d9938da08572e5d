"""The SQL directory: `check`, SQL metacharacters as data, the Postfix howto's
schema used unchanged on MariaDB, MariaDB URL forms, a server restart."""

import os
import subprocess
import urllib.parse

import pytest

from conftest import DOMAIN, assert_error, assert_ok, describe, run_petrel, table

ALICE = "alice@" + DOMAIN
DES_HASH = "jnk.l3QByZvdk"


def user_fields(line):
    f = line.split("\t")
    assert len(f) == 9, "user line must have 9 tab-separated fields: %r" % line
    return dict(zip(("address", "id", "name", "uid", "gid", "home", "maildir", "quota", "login"), f))


# ---------------------------------------------------------------- check


def test_check_fresh(instance):
    cp = instance.run("check", check=False)
    assert_ok(cp)


def test_check_missing_column(instance):
    instance.sql("ALTER TABLE users DROP COLUMN imapok")
    cp = instance.run("check", check=False)
    assert cp.returncode == 1, describe(cp)
    assert "users" in cp.stderr and "imapok" in cp.stderr, describe(cp)
    assert cp.stderr.startswith("petrel: "), describe(cp)


def test_check_missing_table(instance):
    instance.sql("DROP TABLE virtual")
    cp = instance.run("check", check=False)
    assert cp.returncode == 1, describe(cp)
    assert "virtual" in cp.stderr, describe(cp)


def test_check_bad_query(instance):
    cp = instance.run("-o", "query_login=SELECT nosuchcol FROM users WHERE id = :login",
                      "check", check=False)
    assert cp.returncode == 1, describe(cp)
    assert "query_login" in cp.stderr, describe(cp)


def test_check_query_with_unknown_parameter(instance):
    cp = instance.run("-o", "query_alias=SELECT goto FROM virtual WHERE address = :nosuchparam",
                      "check", check=False)
    assert cp.returncode == 1, describe(cp)
    assert "query_alias" in cp.stderr, describe(cp)


def test_check_missing_cert(sqlite_instance):
    os.unlink(os.path.join(sqlite_instance.dir, "tls", "cert.pem"))
    cp = sqlite_instance.run("check", check=False)
    assert cp.returncode == 1, describe(cp)
    assert "cert" in cp.stderr, describe(cp)


def test_check_missing_mail_root(sqlite_instance):
    cp = sqlite_instance.run("-o", "mail_root=/nonexistent/petrel-mail", "check", check=False)
    assert cp.returncode == 1, describe(cp)
    assert "mail_root" in cp.stderr or "/nonexistent/petrel-mail" in cp.stderr, describe(cp)


# ---------------------------------------------------------------- SQL metacharacters are data


ODD_ADDRESSES = ["o'brien@" + DOMAIN, "x%y_z@" + DOMAIN, "a*b+c=d?e{f}@" + DOMAIN,
                 "it's'--@" + DOMAIN]


def test_odd_addresses_roundtrip(instance):
    for i, addr in enumerate(ODD_ADDRESSES):
        instance.run("user", "add", addr, "--password-stdin", "--name", "O'Brien \"%_\"",
                     input="pw%d\n" % i)
        row = instance.user_row(addr)
        assert row is not None and row["address"] == addr, row
        local = addr.split("@")[0]
        assert row["maildir"] == "%s/%s/" % (DOMAIN, local), row
        assert os.path.isdir(os.path.join(instance.mail_root, DOMAIN, local, "new"))
        f = user_fields(instance.run("user", "show", addr).stdout.strip("\n"))
        assert f["address"] == addr and f["name"] == "O'Brien \"%_\"", f
        assert instance.json("user", "show", addr, "--json")["address"] == addr
        assert instance.auth(addr, "pw%d" % i)
    listed = [user_fields(l)["address"] for l in instance.run("user", "list").stdout.splitlines() if l]
    assert sorted(listed) == sorted(ODD_ADDRESSES), listed
    instance.run("alias", "add", "sales'x@" + DOMAIN, "o'brien@" + DOMAIN)
    assert ["sales'x@" + DOMAIN, "o'brien@" + DOMAIN] in table(instance.run("alias", "list").stdout)
    instance.run("user", "passwd", "o'brien@" + DOMAIN, input="new'pw\n")
    assert instance.auth("o'brien@" + DOMAIN, "new'pw")
    instance.run("user", "del", "x%y_z@" + DOMAIN)
    assert instance.user_row("x%y_z@" + DOMAIN) is None
    assert instance.user_row("o'brien@" + DOMAIN) is not None


INJECTION_LOGINS = ["' OR '1'='1", "x' OR 1=1 -- ", "' OR 1=1 #", "%", "_", "*", "%@" + DOMAIN,
                    "_lice@" + DOMAIN, "alice@" + DOMAIN + "' -- ", "alice@" + DOMAIN + "'#",
                    "' UNION SELECT id, address, crypt, name, uid, gid, home, maildir FROM users -- ",
                    "\\", "alice@" + DOMAIN + "\\", "ALICE@" + DOMAIN.upper() + "' OR ''='"]


def test_injection_logins_rejected(instance):
    instance.add_user(ALICE, "pw")
    instance.insert_user("kasperl", "kasperl@" + DOMAIN, DES_HASH)
    secrets = [instance.user_row(ALICE)["crypt"], DES_HASH, "kasperl", ALICE]
    for login in INJECTION_LOGINS:
        for pw in ("pw", "lrepsak", "' OR '1'='1"):
            cp = instance.run("user", "auth", login, input=pw + "\n", check=False)
            assert cp.returncode == 1, "login %r password %r\n%s" % (login, pw, describe(cp))
            assert cp.stdout == "", describe(cp)
            for s in secrets:
                if s not in login:
                    assert s not in cp.stderr, "leaked %r\n%s" % (s, describe(cp))


def test_wildcards_are_not_patterns(instance):
    instance.run("domain", "add", "other.test")
    instance.add_user(ALICE, "pw")
    instance.run("alias", "add", "info@" + DOMAIN, ALICE)
    for dom in ("%", "_", "%.test", "example_test", "%" + DOMAIN, "*"):
        cp = instance.run("alias", "list", dom, check=False)
        assert cp.returncode in (0, 1), describe(cp)
        assert cp.stdout.strip() in ("", "[]"), describe(cp)
        cp = instance.run("user", "list", dom, check=False)
        assert cp.returncode in (0, 1), describe(cp)
        assert cp.stdout.strip() in ("", "[]"), describe(cp)
    for addr in ("%@" + DOMAIN, "_lice@" + DOMAIN, "%"):
        assert_error(instance.run("user", "show", addr, check=False))
        assert_error(instance.run("user", "del", addr, check=False))
        assert_error(instance.run("alias", "del", addr, check=False))
    assert_error(instance.run("domain", "del", "%", check=False))
    assert_error(instance.run("domain", "del", "example_test", check=False))
    assert instance.user_row(ALICE) is not None
    assert ["info@" + DOMAIN, ALICE] in table(instance.run("alias", "list").stdout)
    assert sorted(r[0] for r in table(instance.run("domain", "list").stdout)) == [DOMAIN, "other.test"]


# ---------------------------------------------------------------- the Postfix howto schema, unchanged

HOWTO_SCHEMA = """
CREATE TABLE transport (
  domain varchar(128) NOT NULL default '',
  transport varchar(128) NOT NULL default '',
  UNIQUE KEY domain (domain)
) TYPE=MyISAM;

CREATE TABLE users (
  id varchar(128) NOT NULL default '',
  address varchar(128) NOT NULL default '',
  crypt varchar(128) NOT NULL default '',
  clear varchar(128) NOT NULL default '',
  name varchar(128) NOT NULL default '',
  uid smallint(5) unsigned NOT NULL default '1000',
  gid smallint(5) unsigned NOT NULL default '1000',
  home varchar(128) NOT NULL default '',
  domain varchar(128) NOT NULL default '',
  maildir varchar(255) NOT NULL default '',
  imapok tinyint(3) unsigned NOT NULL default '1',
  bool1 tinyint(3) unsigned NOT NULL default '1',
  bool2 tinyint(3) unsigned NOT NULL default '1',
  PRIMARY KEY (id),
  UNIQUE KEY id (id),
  UNIQUE KEY address (address),
  KEY id_2 (id),
  KEY address_2 (address)
) TYPE=MyISAM;

CREATE TABLE virtual (
  address varchar(255) NOT NULL default '',
  goto varchar(255) NOT NULL default '',
  UNIQUE KEY address (address)
) TYPE=MyISAM;
"""


def load_howto_schema(mariadb, db):
    """Load the howto's statements exactly.  MariaDB >= 5.5 no longer accepts
    the pre-5.1 `TYPE=MyISAM` table option (a syntax error), so if -- and only
    if -- the server rejects the text as is, the sole change is TYPE= -> ENGINE=.
    Returns True if the substitution was needed."""
    import mariadb_ctl
    rc, out, err = mariadb_ctl.sql_status(mariadb.dir, HOWTO_SCHEMA, database=db)
    if rc == 0:
        return False
    assert "TYPE=MyISAM" in err or "syntax" in err.lower(), err
    mariadb.root_sql("DROP TABLE IF EXISTS transport, users, virtual", database=db)
    mariadb.sql(db, HOWTO_SCHEMA.replace(") TYPE=MyISAM;", ") ENGINE=MyISAM;"))
    return True


def openssl_cert(d, cn):
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
                        "-subj", "/CN=" + cn, "-addext", "subjectAltName=DNS:" + cn,
                        "-keyout", os.path.join(d, "key.pem"), "-out", os.path.join(d, "cert.pem")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    os.chmod(os.path.join(d, "key.pem"), 0o600)


@pytest.fixture
def howto(mariadb, petrel_bin, tmp_path):
    db, url = mariadb.new_database("howto")
    substituted = load_howto_schema(mariadb, db)
    d = tmp_path / "howto"
    d.mkdir()
    (d / "mail").mkdir()
    (d / "queue").mkdir()
    (d / "tls").mkdir()
    openssl_cert(str(d / "tls"), "mail.example.com")
    conf = d / "petrel.conf"
    conf.write_text(
        "# written by hand for a Postfix-howto maildb\n"
        "hostname = mail.example.com\n"
        "database = %s\n"
        "mail_root = %s\n"
        "queue_dir = %s\n"
        "tls_cert = %s\n"
        "tls_key = %s\n"
        "query_quota =\n" % (url, d / "mail", d / "queue", d / "tls" / "cert.pem", d / "tls" / "key.pem"))

    class H:
        pass
    h = H()
    h.db, h.url, h.dir, h.conf, h.substituted = db, url, str(d), str(conf), substituted
    h.sql = lambda s: mariadb.sql(db, s)

    def run(*args, input=None, check=True):
        cp = run_petrel(petrel_bin, ["-c", str(conf)] + list(args), input=input, cwd=str(d))
        if check:
            assert_ok(cp)
        return cp
    h.run = run
    # howto-style rows, inserted with SQL
    h.sql([
        "INSERT INTO transport (domain, transport) VALUES ('example.com', 'virtual:')",
        "INSERT INTO users (id, address, crypt, name, uid, gid, home, domain, maildir) VALUES "
        "('kasperl@example.com', 'kasperl@example.com', 'jnk.l3QByZvdk', 'Kasper L', 1000, 1000, "
        "'/', 'example.com', 'example.com/kasperl/')",
        "INSERT INTO virtual (address, goto) VALUES ('postmaster@example.com', 'kasperl@example.com')",
        "INSERT INTO virtual (address, goto) VALUES ('staff@example.com', "
        "'kasperl@example.com,someone@elsewhere.test')",
    ])
    h.schema = {t: mariadb.sql(db, "SHOW CREATE TABLE `%s`" % t) for t in ("transport", "users", "virtual")}
    return h


def test_howto_schema_mysql_encrypt_des(mariadb):
    """MySQL ENCRYPT() (the howto's way to set a password) yields the Exim example hash."""
    db, _ = mariadb.new_database()
    rows = mariadb.sql(db, "SELECT ENCRYPT('lrepsak', 'jn')")
    if rows[0][0] is None:
        pytest.skip("this MariaDB has no ENCRYPT()")
    assert rows == [(DES_HASH,)]


def test_howto_schema_loaded_as_myisam(howto):
    """The howto's tables are MyISAM.  (MariaDB 10.11 rejects the howto's
    `TYPE=MyISAM` verbatim; load_howto_schema then uses ENGINE=MyISAM, the
    only change.)"""
    engines = [r[0] for r in howto.sql(
        "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")]
    assert engines == ["MyISAM"] * 3, engines


def test_howto_schema_lists(howto):
    rows = table(howto.run("domain", "list").stdout)
    assert rows == [["example.com", "virtual:"]], rows
    users = [user_fields(l) for l in howto.run("user", "list").stdout.splitlines() if l]
    assert users == [{"address": "kasperl@example.com", "id": "kasperl@example.com",
                      "name": "Kasper L", "uid": "1000", "gid": "1000", "home": "/",
                      "maildir": "example.com/kasperl/", "quota": "0", "login": "yes"}], users
    js = howto.run("user", "show", "kasperl@example.com", "--json").stdout
    import json
    assert json.loads(js)["quota"] == 0
    aliases = table(howto.run("alias", "list").stdout)
    assert ["postmaster@example.com", "kasperl@example.com"] in aliases, aliases
    assert ["staff@example.com", "kasperl@example.com,someone@elsewhere.test"] in aliases, aliases
    ja = json.loads(howto.run("alias", "list", "--json").stdout)
    assert {"address": "staff@example.com",
            "goto": ["kasperl@example.com", "someone@elsewhere.test"]} in ja, ja


def test_howto_schema_auth(howto):
    def auth(login, pw):
        return howto.run("user", "auth", login, input=pw + "\n", check=False).returncode
    assert auth("kasperl@example.com", "lrepsak") == 0
    assert auth("kasperl@example.com", "lrepsaK") == 1
    howto.sql("UPDATE users SET imapok = 0 WHERE id = 'kasperl@example.com'")
    assert auth("kasperl@example.com", "lrepsak") == 1


def test_howto_schema_encrypt_user(howto):
    """A user whose crypt was set with MySQL ENCRYPT('password') (random DES salt)."""
    rows = howto.sql("SELECT ENCRYPT('s3cret')")
    if rows[0][0] is None:
        pytest.skip("this MariaDB has no ENCRYPT()")
    howto.sql("INSERT INTO users (id, address, crypt, name, domain, maildir) VALUES "
              "('enc@example.com', 'enc@example.com', ENCRYPT('s3cret'), 'Enc', 'example.com', "
              "'example.com/enc/')")
    r = howto.run("user", "auth", "enc@example.com", input="s3cret\n", check=False)
    assert r.returncode == 0, describe(r)


def test_howto_schema_user_add(howto):
    howto.run("user", "add", "bob@example.com", "--password-stdin", "--name", "Bob", input="bobpw\n")
    rows = howto.sql("SELECT id, address, crypt, clear, name, domain, maildir, imapok, bool1, bool2 "
                     "FROM users WHERE address = 'bob@example.com'")
    assert len(rows) == 1, rows
    _id, address, crypt, clear, name, domain, maildir, imapok, bool1, bool2 = rows[0]
    assert maildir == "example.com/bob/", rows
    assert crypt.startswith("$y$") and clear == "" and name == "Bob", rows
    assert domain == "example.com", rows
    assert (imapok, bool1, bool2) == ("1", "1", "1"), rows
    assert os.path.isdir(os.path.join(howto.dir, "mail", "example.com", "bob", "new"))
    f = user_fields(howto.run("user", "show", "bob@example.com").stdout.strip("\n"))
    assert f["quota"] == "0" and f["maildir"] == "example.com/bob/", f
    assert howto.run("user", "auth", "bob@example.com", input="bobpw\n", check=False).returncode == 0
    howto.run("alias", "add", "abuse@example.com", "bob@example.com")
    assert howto.sql("SELECT goto FROM virtual WHERE address = 'abuse@example.com'") == [("bob@example.com",)]
    # the schema is used unchanged: no column added, nothing altered
    after = {t: howto.sql("SHOW CREATE TABLE `%s`" % t) for t in ("transport", "users", "virtual")}
    assert after == howto.schema
    cols = [r[0] for r in howto.sql("SHOW COLUMNS FROM users")]
    assert "quota" not in cols


def test_howto_schema_check(howto):
    cp = howto.run("check", check=False)
    assert_ok(cp)


def test_howto_schema_quota_query_without_column(howto):
    """With the default query_quota against a table with no quota column, check names it."""
    cp = howto.run("-o", "query_quota=SELECT quota FROM users WHERE address = :address",
                   "check", check=False)
    assert cp.returncode == 1, describe(cp)
    assert "query_quota" in cp.stderr or "quota" in cp.stderr, describe(cp)


# ---------------------------------------------------------------- MariaDB URL forms


@pytest.fixture
def mdb_instance(new_instance):
    return new_instance("mariadb", "m")


def test_mariadb_socket_url(mdb_instance, mariadb):
    url = mariadb.url(mdb_instance.db, socket=True)
    cp = mdb_instance.run("-o", "database=" + url, "domain", "list")
    assert table(cp.stdout) == [[DOMAIN, "virtual:"]]
    mdb_instance.run("-o", "database=" + url, "user", "add", ALICE, "--password-stdin", input="pw\n")
    assert mdb_instance.user_row(ALICE) is not None
    assert mdb_instance.run("-o", "database=" + url, "user", "auth", ALICE, input="pw\n",
                            check=False).returncode == 0


def test_mariadb_init_with_socket_url(new_instance, mariadb, petrel_bin, tmp_path):
    db, _ = mariadb.new_database()
    url = mariadb.url(db, socket=True)
    d = tmp_path / "s"
    d.mkdir()
    assert_ok(run_petrel(petrel_bin, ["-o", "database=" + url, "init", "--dir", str(d),
                                      "--domain", DOMAIN], cwd=str(d)))
    assert mariadb.sql(db, "SELECT domain, transport FROM transport") == [(DOMAIN, "virtual:")]
    cp = run_petrel(petrel_bin, ["-c", str(d / "petrel.conf"), "check"], cwd=str(d))
    assert_ok(cp)


@pytest.mark.parametrize("password", ["p@ss", "a:b/c?d#e%f@g h+i&j=k"], ids=["at", "many"])
@pytest.mark.parametrize("socket", [False, True], ids=["tcp", "socket"])
def test_mariadb_password_escapes(mdb_instance, mariadb, password, socket):
    user = "pa_%s_%d" % ("s" if socket else "t", len(password))
    mariadb.new_user(user, password, mdb_instance.db)
    url = mariadb.url(mdb_instance.db, socket=socket, user=user, password=password)
    assert "%40" in url
    cp = mdb_instance.run("-o", "database=" + url, "domain", "list", check=False)
    assert_ok(cp)
    assert table(cp.stdout) == [[DOMAIN, "virtual:"]]
    bad = mariadb.url(mdb_instance.db, socket=socket, user=user, password=password + "x")
    assert_error(mdb_instance.run("-o", "database=" + bad, "domain", "list", check=False))


def test_mariadb_unknown_database(mdb_instance, mariadb):
    url = mariadb.url("no_such_db_here")
    assert_error(mdb_instance.run("-o", "database=" + url, "domain", "list", check=False))


@pytest.mark.parametrize("url", ["mysql://", "mysql://u:p@/db", "mysql://u:p@127.0.0.1:notaport/db",
                                 "mysql://u:p@127.0.0.1:3306", "postgres://u:p@h/db", "nonsense"])
def test_bad_database_urls(sqlite_instance, url):
    assert_error(sqlite_instance.run("-o", "database=" + url, "domain", "list", check=False))


def test_mariadb_restart(mdb_instance, mariadb):
    mdb_instance.add_user(ALICE, "pw")
    try:
        mariadb.stop()
        cp = mdb_instance.run("domain", "list", check=False)
        assert_error(cp)
        cp = mdb_instance.run("user", "auth", ALICE, input="pw\n", check=False)
        assert cp.returncode != 0, describe(cp)
    finally:
        mariadb.start()
    assert table(mdb_instance.run("domain", "list").stdout) == [[DOMAIN, "virtual:"]]
    assert mdb_instance.auth(ALICE, "pw")


def test_check_query_too_few_columns(instance):
    cp = instance.run("-o", "query_user=SELECT id, address FROM users WHERE address = :address",
                      "check", check=False)
    assert cp.returncode == 1, describe(cp)
    assert "query_user" in cp.stderr, describe(cp)


def test_check_reports_unreachable_database(instance):
    cp = instance.run("-o", "database=mysql://x:y@127.0.0.1:1/nodb", "check", check=False)
    assert cp.returncode == 1, describe(cp)
    assert cp.stderr.startswith("petrel: "), describe(cp)


# ---------------------------------------------------------------- queries by configuration


def test_custom_login_query(instance):
    """Another schema plugged in by configuration; result columns by position."""
    instance.sql("CREATE TABLE accounts (login VARCHAR(100) NOT NULL, pw VARCHAR(200) NOT NULL, "
                 "active INTEGER NOT NULL)")
    instance.sql("INSERT INTO accounts (login, pw, active) VALUES ('kasper', '%s', 1)" % DES_HASH)
    instance.sql("INSERT INTO accounts (login, pw, active) VALUES ('off', '%s', 0)" % DES_HASH)
    q = ("query_login=SELECT login, login, pw, 'K', 1000, 1000, '/', 'x/' FROM accounts "
         "WHERE login = :login AND active = 1")
    def auth(login, pw):
        cp = instance.run("-o", q, "user", "auth", login, input=pw + "\n", check=False)
        assert cp.returncode in (0, 1), describe(cp)
        return cp.returncode == 0
    assert auth("kasper", "lrepsak")
    assert not auth("kasper", "wrong")
    assert not auth("off", "lrepsak")
    assert not auth("' OR active = 0 OR login = '", "lrepsak")


def test_check_accepts_local_and_domain_parameters(instance):
    cp = instance.run("-o", "query_user=SELECT id, address, crypt, name, uid, gid, home, maildir "
                      "FROM users WHERE id = :local AND domain = :domain", "check", check=False)
    assert_ok(cp)


def test_login_case_insensitive(instance):
    instance.add_user(ALICE, "pw")
    cp = instance.run("user", "auth", "ALICE@EXAMPLE.TEST", input="pw\n", check=False)
    assert cp.returncode == 0, describe(cp)
    f = user_fields(instance.run("user", "show", "Alice@Example.Test").stdout.rstrip("\n"))
    assert f["address"] == ALICE


def test_many_users_list(instance):
    n = 300
    values = ", ".join("('u%03d@%s', 'u%03d@%s', '', '', 'User %d', 1000, 1000, '', '%s', '%s/u%03d/', 1, 1, 1)"
                       % (i, DOMAIN, i, DOMAIN, i, DOMAIN, DOMAIN, i) for i in range(n))
    instance.sql("INSERT INTO users (id, address, crypt, clear, name, uid, gid, home, domain, maildir, "
                 "imapok, bool1, bool2) VALUES " + values)
    lines = [l for l in instance.run("user", "list").stdout.splitlines() if l]
    assert len(lines) == n
    js = instance.json("user", "list", DOMAIN, "--json")
    assert len(js) == n and {u["address"] for u in js} == {"u%03d@%s" % (i, DOMAIN) for i in range(n)}


def test_parallel_user_add(instance):
    """Concurrent admin commands must not fail on a busy database."""
    n = 8
    procs = []
    for i in range(n):
        args = [instance.bin, "-c", instance.conf, "user", "add", "p%d@%s" % (i, DOMAIN), "--password-stdin"]
        p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=instance.dir)
        procs.append(p)
    results = []
    for p in procs:
        out, err = p.communicate("pw\n", timeout=60)
        results.append((p.returncode, err))
    assert all(rc == 0 for rc, _ in results), results
    assert instance.sql("SELECT COUNT(*) FROM users") == [(str(n),)]


def test_sqlite_missing_file_not_created(sqlite_instance, tmp_path):
    path = tmp_path / "missing.db"
    cp = sqlite_instance.run("-o", "database=sqlite:%s" % path, "domain", "list", check=False)
    assert_error(cp)
    assert not path.exists(), "a command other than init must not create an empty database"


def test_howto_schema_then_init_adds_quota(howto, petrel_bin, mariadb, tmp_path):
    """`petrel init` on an existing howto database keeps the data and adds the quota column."""
    d = tmp_path / "reinit"
    cp = run_petrel(petrel_bin, ["-o", "database=" + howto.url, "init", "--dir", str(d)], cwd=str(tmp_path))
    assert_ok(cp)
    cols = [r[0] for r in howto.sql("SHOW COLUMNS FROM users")]
    assert "quota" in cols, cols
    assert howto.sql("SELECT address, crypt FROM users") == [("kasperl@example.com", DES_HASH)]
    assert howto.sql("SELECT COUNT(*) FROM virtual") == [("2",)]
    conf = str(d / "petrel.conf")
    assert_ok(run_petrel(petrel_bin, ["-c", conf, "check"], cwd=str(d)))
    r = run_petrel(petrel_bin, ["-c", conf, "user", "auth", "kasperl@example.com"], input="lrepsak\n")
    assert r.returncode == 0, describe(r)
    assert_ok(run_petrel(petrel_bin, ["-c", conf, "user", "add", "q@example.com", "--password-stdin",
                                      "--quota", "12345"], input="pw\n"))
    assert howto.sql("SELECT quota FROM users WHERE address = 'q@example.com'") == [("12345",)]


def test_lookups_are_exact_beyond_ascii_case(instance, smtp_start):
    """MariaDB's default collations equate 'é' with 'e' and ignore trailing
    spaces (PAD SPACE): a login or a recipient must still match only its own
    row. ASCII case stays insignificant, as before."""
    instance.add_user(ALICE, "pw")
    instance.add_user("bob@" + DOMAIN, "pw")
    instance.run("alias", "add", "info@" + DOMAIN, "bob@" + DOMAIN)
    dom = DOMAIN.replace("a", "á", 1)
    assert dom != DOMAIN
    for login in ("alicé@" + DOMAIN, "alice@" + dom, ALICE + " ", " " + ALICE,
                  ALICE + "\t", "álice@" + DOMAIN):
        cp = instance.run("user", "auth", login, input="pw\n", check=False)
        assert cp.returncode == 1, "%r logged in as alice\n%s" % (login, describe(cp))
    assert instance.auth("Alice@" + DOMAIN.upper(), "pw")
    assert instance.auth(ALICE, "pw")
    srv = smtp_start(instance)
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test> SMTPUTF8", 250)
        for rcpt in ("bób@" + DOMAIN, "bob@" + dom, "infó@" + DOMAIN, "ínfo@" + DOMAIN):
            r = c.cmd("RCPT TO:<%s>" % rcpt)
            assert r.code in (550, 554), (rcpt, r)
        c.expect("RCPT TO:<BOB@%s>" % DOMAIN.upper(), 250)
        c.expect("QUIT", 221)
