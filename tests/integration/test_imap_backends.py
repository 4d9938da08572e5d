"""Every IMAP command and extension once, on SQLite and on MariaDB: the same
session (logins through query_login, quota from query_quota) against both
directories, with a second session on the mailbox and a restart of the
server in the middle. The detailed cases per command are in the other
test_imap_*.py files (SQLite only, for speed)."""
import re

from conftest import DOMAIN
from imap_util import Conn, Literal, imap_start  # noqa: F401 (fixture)

ALICE = "alice@" + DOMAIN
PASSWORD = "pw"
MSG = (b"From: Bob <bob@example.org>\r\nTo: alice@" + DOMAIN.encode() +
       b"\r\nSubject: tour \xc3\xa4\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n"
       b"Message-ID: <tour@example.org>\r\n\r\nhello tour body\r\n")


def code(r):
    return (r.code() or "").split()


def test_every_command_on_both_backends(instance, imap_start):
    instance.add_user(ALICE, PASSWORD)
    srv = imap_start(instance)
    with srv.conn() as c, srv.conn() as d:
        caps = c.capability()
        assert "IMAP4REV1" in {x.upper() for x in caps}
        c.ok("ID NIL")
        c.ok("NOOP")
        assert c.auth_plain(ALICE, PASSWORD).status == "OK"
        d.login()
        caps = c.capability()
        for ext in ("IDLE", "UIDPLUS", "MOVE", "NAMESPACE", "LITERAL+", "ENABLE",
                    "ID", "UNSELECT", "CHILDREN", "SPECIAL-USE", "QUOTA", "SASL-IR"):
            assert ext in {x.upper() for x in caps}, (ext, caps)
        c.ok("ENABLE QRESYNC")
        assert c.ok("NAMESPACE").data("NAMESPACE")
        r = c.ok('LIST "" "*"')
        names = " ".join(x.decode() for x in r.data("LIST"))
        for special in ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"):
            assert special in names, names
        c.ok("CREATE Tour")
        c.ok("CREATE Tour.Sub")
        c.ok("RENAME Tour Trip")
        c.ok("SUBSCRIBE Trip")
        assert any(b"Trip" in x for x in c.ok('LSUB "" "*"').data("LSUB"))
        assert any(b"\\HasChildren" in x for x in c.ok('LIST "" "Trip"').data("LIST"))
        r = c.append("INBOX", MSG, flags="\\Flagged $Tour", date="21-Nov-2026 10:00:00 +0000",
                     plus=True)
        assert r.status == "OK" and code(r)[0].upper() == "APPENDUID", r
        uid1 = int(code(r)[2])
        srv.deliver(ALICE, MSG.replace(b"tour body", b"second body"))
        r = c.ok("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)")
        st = r.data("STATUS")[0].decode()
        assert "MESSAGES 2" in st and "UNSEEN 2" in st, st
        r = c.select("INBOX")
        assert r.numbered("EXISTS") == [2] and "READ-WRITE" in r.line.decode()
        uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", b" ".join(r.untagged)).group(1))
        d.select("INBOX")
        f = c.fetch("1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE "
                    "BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT]<0.5>)").fetches()
        assert f[1]["UID"] == str(uid1) and "$Tour" in f[1]["FLAGS"], f
        assert f[1]["BODY[TEXT]<0>"] == b"hello", f
        assert c.ok("SEARCH CHARSET UTF-8 SUBJECT ", Literal("ä".encode())).search() == [1, 2]
        assert c.ok("UID SEARCH BODY second").search() != []
        c.ok("STORE 2 +FLAGS (\\Seen \\Answered)")
        r = d.ok("NOOP")
        assert any(b"FETCH" in u and b"\\Answered" in u for u in r.untagged), r
        r = c.ok("UID COPY %d Trip" % uid1)
        assert code(r)[0].upper() == "COPYUID", r
        r = c.ok("MOVE 2 Trip.Sub")
        # c has QRESYNC on: VANISHED <uid> instead of EXPUNGE (RFC 7162 3.2.10)
        assert r.data("VANISHED") == [f[2]["UID"].encode()] and not r.numbered("EXPUNGE"), r
        r = d.ok("NOOP")
        assert r.numbered("EXPUNGE") == [2], r
        # IDLE in the second session sees the first one's change
        d.idle()
        c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        got, _ = d.read_until(rb"FETCH", timeout=5)
        assert got is not None
        d.done()
        c.ok("UID EXPUNGE %d" % uid1)
        c.ok("CHECK")
        c.ok("CLOSE")
        r = c.examine("Trip")
        assert "READ-ONLY" in r.line.decode() and r.numbered("EXISTS") == [1], r
        c.ok("UNSELECT")
        r = c.ok("GETQUOTAROOT INBOX")
        assert r.data("QUOTAROOT") and r.data("QUOTA"), r
        c.ok('GETQUOTA ""')
        c.ok("UNSUBSCRIBE Trip")
        c.no("DELETE Trip")          # it has a child
        c.ok("DELETE Trip.Sub")
        c.ok("DELETE Trip")
        c.logout()
        d.logout()

    # a restart keeps UIDs, UIDVALIDITY and flags
    srv.deliver(ALICE, MSG)
    with srv.conn() as c:
        c.login()
        c.select("INBOX")
        before = c.fetch("1:*", "(UID FLAGS)").fetches()
        c.logout()
    srv.stop()
    srv2 = imap_start(instance)
    with srv2.conn() as c:
        c.login()
        r = c.select("INBOX")
        assert int(re.search(rb"UIDVALIDITY (\d+)", b" ".join(r.untagged)).group(1)) == uidvalidity
        after = c.fetch("1:*", "(UID FLAGS)").fetches()
        assert {k: v["UID"] for k, v in after.items()} == {k: v["UID"] for k, v in before.items()}
        c.logout()
    assert srv2.wait_log(r"imap login: user=<%s>" % re.escape(ALICE))
