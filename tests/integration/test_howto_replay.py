"""The two classic howtos' hosts, replayed against petrel: each howto's
database loaded from its SQL and example rows into MariaDB (the howtos use
MySQL), petrel started with the matching schema preset and the settings
`petrel migrate check` names for such a host (docs/migration.md), then
every step of a telnet test session typed line by line: SMTP (delivery to a
mailbox, to an alias or redirect), POP3 and IMAP logins with the example
password. Each reply must carry the code the old stack answered, and the
mail must land in the maildir the users table names.

Sources, and what is derived:
- The Postfix howto is "Postfix+Courier-IMAP+MySQL for multiple domains
  HOWTO" (Kirby Menzel and Lucas Peet, linuxhowtos.org/System/postfix.htm);
  the Exim howto is "Virtual Domains with Exim + Courier-IMAP + MySQL",
  version 0.9.1 (p5r.uk/blog/2002/virtual_domains.html). Only their opening
  passages could be read where these tests were written, so the statements
  below are not a copy of their text:
- the Postfix howto's tables (transport, users, virtual, TYPE=MyISAM) are
  the statements of test_directory.py (HOWTO_SCHEMA, loaded the same way:
  TYPE= becomes ENGINE= only if MariaDB refuses the text), with that
  module's example rows;
- the Exim howto's database: the opening passage gives the users table's
  first columns as `id`, `crypt`, `clear` (`char(128) DEFAULT '' NOT
  NULL`) and passwords made with MySQL's ENCRYPT(); the rest of the users
  table and the domains table have the shape test_schema_presets.py gives
  the exim-howto layout, with its example user (kasperl@example.com,
  ENCRYPT('lrepsak') = jnk.l3QByZvdk) and a redirect row (an address in
  `maildir`);
- the sessions are the Exim howto's SMTP session as test_smtp_lenient.py
  types it (no HELO, lower-case verbs, addresses without angle brackets)
  and the IMAP telnet session of test_imap_clients.py (login, select
  inbox, logout), plus a POP3 session of the same kind.
"""

import os
import re

import pytest

from harness.conn import LineConn
from harness import server
from harness.instance import make_instance
from test_directory import HOWTO_SCHEMA, load_howto_schema

DES_HASH = "jnk.l3QByZvdk"      # ENCRYPT('lrepsak') with the salt 'jn'
DES_PASSWORD = "lrepsak"

# after HOWTO_SCHEMA: the example rows of test_directory.py
POSTFIX_ROWS = [
    "INSERT INTO transport (domain, transport) VALUES ('example.com', 'virtual:')",
    "INSERT INTO users (id, address, crypt, name, uid, gid, home, domain, maildir) VALUES "
    "('kasperl@example.com', 'kasperl@example.com', 'jnk.l3QByZvdk', 'Kasper L', 1000, 1000, "
    "'/', 'example.com', 'example.com/kasperl/')",
    "INSERT INTO virtual (address, goto) VALUES ('postmaster@example.com', 'kasperl@example.com')",
]
# Postfix's defaults, Courier's namespace and POP3 UIDLs; the howto's users
# table has no quota column
POSTFIX_SETTINGS = ["schema = postfix-howto", "query_quota =", "smtp_helo_required = no",
                    "smtp_strict_envelopes = no", "recipient_delimiter =",
                    "catchall_order = postfix", "imap_namespace_prefix = INBOX.",
                    "pop3_uidl_format = courier"]

EXIM_SQL = """
CREATE TABLE users (
    id      char(128) DEFAULT '' NOT NULL,
    crypt   char(128) DEFAULT '' NOT NULL,
    clear   char(128) DEFAULT '' NOT NULL,
    name    char(128) DEFAULT '' NOT NULL,
    uid     int(10) unsigned DEFAULT '65534' NOT NULL,
    gid     int(10) unsigned DEFAULT '65534' NOT NULL,
    home    char(255) DEFAULT '' NOT NULL,
    maildir char(255) DEFAULT '' NOT NULL,
    quota   char(255) DEFAULT '' NOT NULL,
    KEY id (id)
);
CREATE TABLE domains (
    domain  char(128) DEFAULT '' NOT NULL,
    KEY domain (domain)
);
INSERT INTO domains (domain) VALUES ('example.com');
INSERT INTO users (id, crypt, clear, name, uid, gid, home, maildir, quota)
    VALUES ('kasperl@example.com', 'jnk.l3QByZvdk', '', 'Kasper L', 1000, 1000, '',
            'example.com/kasperl/', '1000000S');
INSERT INTO users (id, crypt, clear, name, uid, gid, home, maildir, quota)
    VALUES ('fw@example.com', '', '', 'Forward', 1000, 1000, '', 'kasperl@example.com', '');
"""
EXIM_SETTINGS = ["schema = exim-howto", "smtp_helo_required = no",
                 "smtp_strict_envelopes = no", "recipient_delimiter =",
                 "imap_namespace_prefix = INBOX.", "pop3_uidl_format = courier"]


def start_howto(petrel_bin, mariadb, base, load, settings):
    inst = make_instance(petrel_bin, base, "mariadb", mariadb=mariadb, domain=None)
    mariadb.sql(inst.db, "DROP TABLE transport, virtual, users")
    load(inst)
    keep = [l for l in open(inst.conf).read().splitlines()
            if not l.startswith("query_") and not l.startswith("schema")]
    with open(inst.conf, "w") as f:
        f.write("\n".join(keep + settings) + "\n")
    return inst, server.start(inst, ("smtp", "pop3", "imap"), ("hostname=mail.example.com",
                                                               "auth_fail_delay=100"))


@pytest.fixture(scope="module")
def postfix_howto(petrel_bin, mariadb, tmp_path_factory):
    def load(inst):
        inst.substituted = load_howto_schema(mariadb, inst.db)
        mariadb.sql(inst.db, POSTFIX_ROWS)
    inst, srv = start_howto(petrel_bin, mariadb, tmp_path_factory.mktemp("postfix"), load,
                            POSTFIX_SETTINGS)
    yield inst, srv
    srv.stop()
    assert srv.returncode == 0, srv.log()


@pytest.fixture(scope="module")
def exim_howto(petrel_bin, mariadb, tmp_path_factory):
    def load(inst):
        mariadb.sql(inst.db, EXIM_SQL)
    inst, srv = start_howto(petrel_bin, mariadb, tmp_path_factory.mktemp("exim"), load,
                            EXIM_SETTINGS)
    yield inst, srv
    srv.stop()
    assert srv.returncode == 0, srv.log()


# ---------------------------------------------------------------- replay

POP3_MULTI = {"list", "uidl", "retr", "top", "capa"}


def reply(conn, proto, line):
    """The server's whole answer to `line` (a list of lines, str)."""
    out = [conn.line().decode("utf-8", "replace")]
    if proto == "smtp":
        while len(out[-1]) > 3 and out[-1][3] == "-":
            out.append(conn.line().decode("utf-8", "replace"))
    elif proto == "imap":
        tag = line.split(" ", 1)[0]
        while not out[-1].startswith(tag + " "):
            out.append(conn.line().decode("utf-8", "replace"))
    elif proto == "pop3":
        words = line.split()
        if out[0].startswith("+OK") and words and words[0].lower() in POP3_MULTI \
                and (len(words) == 1 or words[0].lower() in ("retr", "top")):
            while out[-1] != ".":
                out.append(conn.line().decode("utf-8", "replace"))
    return out


def replay(srv, proto, session):
    """session: the greeting's pattern, then (typed line, pattern of the
    reply's status line or None while DATA's text is typed). Returns every
    answer, in order."""
    greeting, steps = session[0], session[1:]
    with LineConn(srv.host, srv.port_of(proto), greeting=False) as c:
        g = c.line().decode()
        assert re.match(greeting, g), (proto, g)
        answers = [[g]]
        for typed, want in steps:
            c.send(typed + "\r\n")
            if want is None:
                continue
            ans = reply(c, proto, typed)
            status = ans[0] if proto == "pop3" else ans[-1]
            assert re.match(want, status), "%s: typed %r, got %r" % (proto, typed, ans)
            answers.append(ans)
        if proto in ("smtp", "pop3", "imap"):
            data, closed = c.read_rest()
            assert closed and data == b"", data
    return answers


def smtp_session(rcpt, subject):
    """The Exim howto's session as test_smtp_lenient.py types it."""
    return [r"^220 ",
            ("mail from: someone@example.org", r"^250 "),
            ("rcpt to: %s" % rcpt, r"^250 "),
            ("data", r"^354 "),
            ("Subject: %s" % subject, None),
            ("", None),
            ("test", None),
            (".", r"^250 "),
            ("quit", r"^221 ")]


def pop3_session(user, password, count):
    return [r"^\+OK",
            ("user %s" % user, r"^\+OK"),
            ("pass %s" % password, r"^\+OK"),
            ("stat", r"^\+OK %d \d+$" % count),
            ("uidl", r"^\+OK"),
            ("retr 1", r"^\+OK"),
            ("quit", r"^\+OK")]


def imap_session(user, password):
    """The telnet session of test_imap_clients.py, with a LIST."""
    return [r"^\* OK",
            ("a login %s %s" % (user, password), r"^a OK"),
            ("b select inbox", r"^b OK \[READ-WRITE\]"),
            ('c list "" "*"', r"^c OK"),
            ("d logout", r"^d OK")]


def delivered(inst, local):
    md = os.path.join(inst.mail_root, "example.com", local)
    out = []
    for sub in ("new", "cur"):
        p = os.path.join(md, sub)
        if os.path.isdir(p):
            for n in sorted(os.listdir(p)):
                with open(os.path.join(p, n), "rb") as f:
                    out.append(f.read())
    return out


def subjects(msgs):
    return sorted(l.rstrip(b"\r").decode() for m in msgs for l in m.split(b"\n")
                  if l.startswith(b"Subject: "))


def check_mail_sessions(inst, srv, rcpts):
    """Deliver with the SMTP session to each rcpt (all ending in kasperl's
    maildir), then read it with the POP3 and IMAP sessions."""
    for i, rcpt in enumerate(rcpts):
        replay(srv, "smtp", smtp_session(rcpt, "howto test %d" % i))
    msgs = delivered(inst, "kasperl")
    assert subjects(msgs) == ["Subject: howto test %d" % i for i in range(len(rcpts))], msgs
    for m in msgs:
        assert m.startswith(b"Return-Path: <someone@example.org>\nDelivered-To: kasperl@example.com\n"), m[:200]

    answers = replay(srv, "pop3", pop3_session("kasperl@example.com", DES_PASSWORD, len(rcpts)))
    uidls = answers[4][1:-1]
    assert len(uidls) == len(rcpts) and all(re.match(r"^\d+ UID\d+-\d+$", u) for u in uidls), uidls
    assert os.path.isfile(os.path.join(inst.mail_root, "example.com", "kasperl",
                                       "courierpop3dsizelist"))
    retr = answers[5]
    assert "Subject: howto test 0" in retr, retr

    answers = replay(srv, "imap", imap_session("kasperl@example.com", DES_PASSWORD))
    select = answers[2]
    assert "* %d EXISTS" % len(rcpts) in select, select
    listing = answers[3]
    assert any(re.match(r'^\* LIST \([^)]*\) "\." "?INBOX"?$', l) for l in listing), listing
    bye = answers[4]
    assert bye[0].startswith("* BYE"), bye
    # a wrong password is refused, over both
    bad = replay(srv, "imap", [r"^\* OK", ("a login kasperl@example.com lrepsaK", r"^a NO"),
                               ("b logout", r"^b OK")])
    assert bad[1][-1].startswith("a NO"), bad
    replay(srv, "pop3", [r"^\+OK", ("user kasperl@example.com", r"^\+OK"),
                         ("pass lrepsaK", r"^-ERR"), ("quit", r"^\+OK")])


def assert_nothing_to_change(inst):
    """The settings above are the ones `petrel migrate check` names: with
    them, on the tree the sessions left, it has nothing more to say."""
    cp = inst.run("migrate", "check", check=False)
    assert cp.returncode == 0 and cp.stdout.splitlines()[-1] == "nothing to change", \
        (cp.returncode, cp.stdout, cp.stderr)


def test_postfix_howto_replay(postfix_howto):
    inst, srv = postfix_howto
    engines = [r[0] for r in inst.mariadb.sql(
        inst.db, "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")]
    assert engines == ["MyISAM"] * 3, engines
    # the mailbox, and the virtual table's alias for it
    check_mail_sessions(inst, srv, ["kasperl@example.com", "postmaster@example.com"])
    # an unknown user of the domain, and a domain not in the transport table
    replay(srv, "smtp", [r"^220 ", ("mail from: someone@example.org", r"^250 "),
                         ("rcpt to: nobody@example.com", r"^550 "),
                         ("rcpt to: x@elsewhere.test", r"^554 "),
                         ("quit", r"^221 ")])
    assert_nothing_to_change(inst)
    assert_nothing_to_change(inst)


def test_exim_howto_replay(exim_howto):
    inst, srv = exim_howto
    # the mailbox, and the redirect row (an address in maildir)
    check_mail_sessions(inst, srv, ["kasperl@example.com", "fw@example.com"])
    # the redirect made no directory named after the address
    assert sorted(os.listdir(os.path.join(inst.mail_root, "example.com"))) == ["kasperl"]
    replay(srv, "smtp", [r"^220 ", ("mail from: someone@example.org", r"^250 "),
                         ("rcpt to: nobody@example.com", r"^550 "),
                         ("rcpt to: x@elsewhere.test", r"^554 "),
                         ("quit", r"^221 ")])
    assert_nothing_to_change(inst)
