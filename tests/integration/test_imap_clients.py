"""Real IMAP clients against petrel:

- curl: list mailboxes, fetch by UID (whole message and sections), SEARCH,
  STATUS, upload (APPEND) with `curl -T`, AUTHENTICATE PLAIN (SASL-IR), over
  plain IMAP (plain-text logins allowed on loopback), implicit TLS (imaps://)
  and STARTTLS (--ssl-reqd);
- mbsync (isync): a petrel account (Far) synced both ways with a local
  Maildir (Near), then changes on each side (new messages, flag changes,
  deletions with expunge, a new folder) and a second sync; both sides must
  agree (messages, flags, contents), plain and STARTTLS; and again after a
  restart of the server (UIDVALIDITY and UIDs kept, mbsync goes on);
- mutt, driven in a detached tmux session (no terminal needed): read a
  message, pipe it to a file, save it to another folder and expunge it from
  INBOX, checked from the server side (IMAP and the Maildir), over imap://
  and imaps://; and mutt idling on INBOX shows mail delivered meanwhile;
- the Exim howto's telnet session (LOGIN / SELECT INBOX / LOGOUT) for users
  whose crypt column holds a traditional DES hash, and for one who has no
  maildir yet (SQLite and MariaDB).

Needs the Debian packages curl, isync, mutt and tmux (scripts/install-deps.sh
--test installs them); a missing client fails the test, nothing is skipped.
"""

import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import pycrypt
from imap_util import (ALICE, PASSWORD, folder_dir, imap_inst, imap_instance,  # noqa: F401
                       imap_server, imap_start, list_entries, listdir, message, put, wire)

RUN_TIMEOUT = 90
SYSTEM_FLAGS = {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"}
# Maildir info letters <-> IMAP system flags
LETTER_FLAG = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
               "T": "\\Deleted"}
SPECIAL_FOLDERS = ("Sent", "Drafts", "Trash", "Junk", "Archive")


# --------------------------------------------------------------------------
# helpers


def need(prog, package):
    path = shutil.which(prog)
    if path is None:
        pytest.fail("%s not found: apt-get install %s (scripts/install-deps.sh --test)"
                    % (prog, package))
    return path


def lf(data):
    return data.replace(b"\r\n", b"\n")


def cert_path(inst):
    c = inst.config()["tls_cert"]
    return c if os.path.isabs(c) else os.path.join(inst.dir, c)


def run(cmd, srv, timeout=RUN_TIMEOUT, env=None, cwd=None):
    """Run a client (bounded); stdout and stderr separately, as bytes."""
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        pytest.fail("%s did not finish within %ss\nstdout: %r\nstderr: %r\nserver log:\n%s"
                    % (" ".join(cmd), timeout, (e.stdout or b"")[-3000:],
                       (e.stderr or b"")[-3000:], srv.log()))


def describe(cp, srv):
    return ("command: %s\nexit status: %s\n--- stdout ---\n%s\n--- stderr ---\n%s\n"
            "--- server log ---\n%s"
            % (" ".join(cp.args), cp.returncode,
               cp.stdout.decode("utf-8", "replace")[-6000:],
               cp.stderr.decode("utf-8", "replace")[-6000:], srv.log()[-6000:]))


def server_folder(srv, folder="INBOX", user=ALICE, password=PASSWORD):
    """The messages of a folder as the server shows them, read without
    changing anything (EXAMINE, BODY.PEEK[]): [(uid, flags, body)] by uid;
    flags a frozenset of the flags without \\Recent."""
    with srv.conn() as c:
        c.login(user, password)
        r = c.examine(folder)
        exists = r.numbered("EXISTS")
        assert exists, "EXAMINE %s: no EXISTS in %r" % (folder, r)
        out = []
        if exists[-1] > 0:
            r = c.ok("UID FETCH 1:* (UID FLAGS BODY.PEEK[])")
            fetched = r.fetches()
            assert len(fetched) == exists[-1], (exists, r)
            for seq, items in sorted(fetched.items()):
                out.append((int(items["UID"]),
                            frozenset(items["FLAGS"]) - {"\\Recent"},
                            items["BODY[]"]))
        c.logout()
    return sorted(out)


def server_folders(srv, user=ALICE, password=PASSWORD):
    """{name: set of attributes} from LIST "" "*" (delimiter checked: '.')."""
    with srv.conn() as c:
        c.login(user, password)
        r = c.ok('LIST "" "*"')
        entries = list_entries(r)
        c.logout()
    for attrs, sep, name in entries:
        assert sep == ".", "hierarchy delimiter of %r is %r, expected '.'" % (name, sep)
    return {name: attrs for attrs, sep, name in entries}


def message_id(data):
    m = re.search(rb"^Message-ID:\s*(<[^>\r\n]*>)", data, re.M | re.I)
    assert m, "no Message-ID in %r" % data[:300]
    return m.group(1).decode()


def strip_tuid(data):
    """mbsync may add an X-TUID header to messages it uploads to find their
    UID on servers without UIDPLUS; it is not part of the message."""
    return re.sub(rb"^X-TUID: [^\n]*\n", b"", lf(data), flags=re.M)


def by_msgid(msgs):
    """[(uid, flags, body)] -> {Message-ID: (flags, body LF, no X-TUID)}"""
    out = {}
    for uid, flags, body in msgs:
        k = message_id(body)
        assert k not in out, "two messages with %s" % k
        out[k] = (flags, strip_tuid(body))
    return out


def maildir_flags(name):
    info = name.split(":2,", 1)[1] if ":2," in name else ""
    return frozenset(LETTER_FLAG[c] for c in info if c in LETTER_FLAG)


def maildir_folder(path):
    """A local Maildir folder: {Message-ID: (flags, body LF, no X-TUID)}."""
    out = {}
    for sub in ("new", "cur"):
        for n in listdir(os.path.join(path, sub)):
            with open(os.path.join(path, sub, n), "rb") as f:
                data = f.read()
            k = message_id(data)
            assert k not in out, "two messages with %s in %s" % (k, path)
            out[k] = (maildir_flags(n), strip_tuid(data))
    return out


def maildir_file(path, msgid):
    """(sub/name) of the file of the message with this Message-ID."""
    for sub in ("new", "cur"):
        for n in listdir(os.path.join(path, sub)):
            with open(os.path.join(path, sub, n), "rb") as f:
                if message_id(f.read()) == msgid:
                    return os.path.join(sub, n)
    raise AssertionError("no message %s in %s" % (msgid, path))


def sample(n, **kw):
    """message(n) with a distinct Date (clients sort by it)."""
    return message(n, date=b"Mon, %d Mar 2026 10:00:00 +0000" % n, **kw)


def fill_inbox(srv, msgs, user=ALICE):
    """Put messages (LF) into INBOX/new in order (UIDs 1, 2, ...)."""
    for i, m in enumerate(msgs):
        put(srv.instance, user, m, name="17000000%02d.M%dP1.clients" % (i, i))


# --------------------------------------------------------------------------
# curl


def curl(srv, *args, user=ALICE, password=PASSWORD, check=True):
    cmd = [need("curl", "curl"), "-sS", "--max-time", "30", "--connect-timeout", "10"]
    if user is not None:
        cmd += ["-u", "%s:%s" % (user, password)]
    cmd += list(args)
    cp = run(cmd, srv, timeout=60)
    if check:
        assert cp.returncode == 0, describe(cp, srv)
    return cp


def curl_list(out):
    """curl's output for a mailbox list URL: the untagged LIST responses."""
    names = {}
    for line in out.decode("utf-8", "replace").splitlines():
        m = re.match(r'^\* LIST \(([^)]*)\) (NIL|"(?:[^"\\]|\\.)*") (.+)$', line.rstrip("\r"))
        assert m, "not a LIST response: %r" % line
        assert m.group(2) == '"."', line
        name = m.group(3)
        if name.startswith('"'):
            name = re.sub(r"\\(.)", r"\1", name[1:-1])
        names[name] = set(m.group(1).split())
    return names


CURL_MSGS = [
    sample(1, body=b"first body\n.\n..two dots\n.leading dot\n"),
    sample(2, body=b"second body\n" + b"x" * 3000 + b"\n\xc3\xa9t\xc3\xa9 8-bit\n"),
    sample(3, body=b"third body, no final newline"),
]


def test_curl_plain(imap_server, tmp_path):
    srv = imap_server
    fill_inbox(srv, CURL_MSGS)
    base = "imap://%s:%d" % (srv.host, srv.port)

    # the mailbox list (LOGIN, LIST): INBOX and the special folders made at
    # the first login, '.' as the delimiter
    names = curl_list(curl(srv, base + "/").stdout)
    for f in ("INBOX",) + SPECIAL_FOLDERS:
        assert f in names, names

    # STATUS by a custom command (curl prints the untagged responses)
    out = curl(srv, base + "/", "-X", "STATUS INBOX (MESSAGES UNSEEN)").stdout
    assert re.search(rb'^\* STATUS "?INBOX"? \((MESSAGES 3 UNSEEN 3|UNSEEN 3 MESSAGES 3)\)\r?$',
                     out, re.M | re.I), out

    # fetch UID 1 (curl: UID FETCH 1 BODY[]) byte for byte; BODY[] sets \Seen
    got = curl(srv, base + "/INBOX;UID=1").stdout
    assert got == wire(CURL_MSGS[0])
    flags = {uid: fl for uid, fl, _ in server_folder(srv)}
    assert flags == {1: {"\\Seen"}, 2: set(), 3: set()}, flags
    # the documented URL form, a message with a long and an 8-bit line
    assert curl(srv, base + "/INBOX/;UID=2").stdout == wire(CURL_MSGS[1])
    # no final newline: exactly the octets stored
    assert curl(srv, base + "/INBOX;UID=3").stdout == wire(CURL_MSGS[2])
    # sections
    assert curl(srv, base + "/INBOX;UID=2;SECTION=HEADER.FIELDS%20(SUBJECT)").stdout == \
        b"Subject: test message 2\r\n\r\n"
    assert curl(srv, base + "/INBOX;UID=1;SECTION=TEXT").stdout == \
        b"first body\r\n.\r\n..two dots\r\n.leading dot\r\n"

    # SEARCH (the query part of the URL)
    out = curl(srv, base + "/INBOX?SUBJECT%20%22message%202%22").stdout
    assert re.search(rb"^\* SEARCH 2\r?$", out, re.M), out
    out = curl(srv, base + "/INBOX?BODY%20%22leading%20dot%22").stdout
    assert re.search(rb"^\* SEARCH 1\r?$", out, re.M), out

    # upload: APPEND to Sent
    up = sample(20, body=b"uploaded by curl\n.\nend\n")
    path = tmp_path / "upload.eml"
    path.write_bytes(wire(up))
    curl(srv, "-T", str(path), base + "/Sent")
    sent = server_folder(srv, "Sent")
    assert [b for _, _, b in sent] == [wire(up)], sent
    files = [f for s in ("new", "cur")
             for f in listdir(os.path.join(folder_dir(srv.instance, ALICE, "Sent"), s))]
    assert len(files) == 1, files
    # and it can be fetched back by curl
    assert curl(srv, base + "/Sent;UID=%d" % sent[0][0]).stdout == wire(up)

    # AUTHENTICATE PLAIN with an initial response (SASL-IR) (curl 7.88 cannot
    # force the LOGIN command while the server offers a SASL mechanism it
    # knows; mbsync and the howto session use LOGIN)
    cp = curl(srv, "-v", "--login-options", "AUTH=PLAIN", "--sasl-ir", base + "/INBOX;UID=1")
    assert cp.stdout == wire(CURL_MSGS[0])
    assert re.search(rb"> \S+ AUTHENTICATE PLAIN \S+", cp.stderr), cp.stderr

    # a wrong password: curl exit 67 (login denied), both ways
    for opts in ([], ["--login-options", "AUTH=PLAIN", "--sasl-ir"]):
        cp = curl(srv, *(opts + [base + "/"]), password="wrong", check=False)
        assert cp.returncode == 67, describe(cp, srv)

    # nothing else changed in INBOX
    inbox = server_folder(srv)
    assert [b for _, _, b in inbox] == [wire(m) for m in CURL_MSGS]


def test_curl_tls(imap_server, tmp_path):
    srv = imap_server
    fill_inbox(srv, CURL_MSGS)
    cert = cert_path(srv.instance)
    tls = "imaps://%s:%d" % (srv.host, srv.ssl_port)
    plain = "imap://%s:%d" % (srv.host, srv.port)

    # implicit TLS without verification (--insecure)
    names = curl_list(curl(srv, "--insecure", tls + "/").stdout)
    for f in ("INBOX",) + SPECIAL_FOLDERS:
        assert f in names, names
    assert curl(srv, "--insecure", tls + "/INBOX;UID=2").stdout == wire(CURL_MSGS[1])
    # implicit TLS with full verification against the instance's certificate
    # (its subjectAltName has IP:127.0.0.1)
    assert curl(srv, "--cacert", cert, tls + "/INBOX;UID=1").stdout == wire(CURL_MSGS[0])

    # STARTTLS, required by the client; the dialogue shows it was used
    cp = curl(srv, "-v", "--ssl-reqd", "--insecure", plain + "/INBOX;UID=3")
    assert cp.stdout == wire(CURL_MSGS[2])
    assert re.search(rb"> \S+ STARTTLS", cp.stderr), cp.stderr.decode("utf-8", "replace")
    cp = curl(srv, "--ssl-reqd", "--cacert", cert, plain + "/INBOX;UID=1")
    assert cp.stdout == wire(CURL_MSGS[0])

    # uploads over both
    up1 = sample(30, body=b"uploaded over imaps\n")
    up2 = sample(31, body=b"uploaded after STARTTLS\n")
    (tmp_path / "a.eml").write_bytes(wire(up1))
    (tmp_path / "b.eml").write_bytes(wire(up2))
    curl(srv, "--insecure", "-T", str(tmp_path / "a.eml"), tls + "/Drafts")
    curl(srv, "--ssl-reqd", "--insecure", "-T", str(tmp_path / "b.eml"), plain + "/Drafts")
    drafts = server_folder(srv, "Drafts")
    assert [b for _, _, b in drafts] == [wire(up1), wire(up2)], drafts

    # a wrong password over TLS
    cp = curl(srv, "--insecure", tls + "/", password="wrong", check=False)
    assert cp.returncode == 67, describe(cp, srv)
    # INBOX: UIDs 1..3 were fetched with BODY[] (\Seen), UID 2 over imaps
    flags = {uid: fl for uid, fl, _ in server_folder(srv)}
    assert flags == {1: {"\\Seen"}, 2: {"\\Seen"}, 3: {"\\Seen"}}, flags


# --------------------------------------------------------------------------
# mbsync (isync 1.4: IMAPAccount, IMAPStore, MaildirStore, Channel, Far/Near)


class Mbsync:
    def __init__(self, srv, tmp_path, tls=False):
        self.bin = need("mbsync", "isync")
        self.dir = str(tmp_path / "mbsync")
        self.near = os.path.join(self.dir, "mail")
        self.inbox = os.path.join(self.dir, "inbox")
        os.makedirs(self.near)
        self.conf = os.path.join(self.dir, "mbsyncrc")
        self.tls = tls
        self.configure(srv)

    def configure(self, srv):
        """(Re)write the configuration for this server (its ports)."""
        self.srv = srv
        if self.tls:
            ssl = "SSLType STARTTLS\nCertificateFile %s\n" % cert_path(srv.instance)
        else:
            ssl = "SSLType None\n"
        with open(self.conf, "w") as f:
            f.write("IMAPAccount petrel\n"
                    "Host %s\nPort %d\nUser %s\nPass %s\n"
                    "AuthMechs LOGIN\n%sTimeout 30\n\n"
                    "IMAPStore petrel-far\nAccount petrel\n\n"
                    "MaildirStore local-near\nPath %s/\nInbox %s\nSubFolders Verbatim\n\n"
                    "Channel petrel\nFar :petrel-far:\nNear :local-near:\n"
                    "Patterns *\nCreate Both\nExpunge Both\nSyncState *\nSync All\n"
                    % (srv.host, srv.port, ALICE, PASSWORD, ssl, self.near, self.inbox))
        os.chmod(self.conf, 0o600)

    def sync(self):
        env = dict(os.environ, HOME=self.dir, LC_ALL="C")
        cp = run([self.bin, "-c", self.conf, "-a", "-V"], self.srv, env=env, timeout=120)
        assert cp.returncode == 0, describe(cp, self.srv)
        err = cp.stderr.decode("utf-8", "replace")
        assert "Error" not in err and "error:" not in err, describe(cp, self.srv)
        return cp

    def folder(self, name):
        return self.inbox if name == "INBOX" else os.path.join(self.near, name)

    def near_folders(self):
        return sorted(n for n in os.listdir(self.near)
                      if os.path.isdir(os.path.join(self.near, n, "cur")))


def both_sides(srv, mb, folder):
    """(server, near) {Message-ID: (flags, body)} of a folder; they must agree."""
    far = by_msgid(server_folder(srv, folder))
    near = maildir_folder(mb.folder(folder))
    assert set(far) == set(near), "%s: server %s, near %s" % (folder, sorted(far), sorted(near))
    for k in far:
        assert far[k][0] == near[k][0], "%s %s: flags server %s, near %s" % (
            folder, k, sorted(far[k][0]), sorted(near[k][0]))
        assert far[k][1] == near[k][1], "%s %s: contents differ\nserver %r\nnear %r" % (
            folder, k, far[k][1], near[k][1])
    return far


def expect(state, want):
    """state {Message-ID: (flags, body)}; want {n: flags}: messages sample(n)."""
    got = {k: set(v[0]) for k, v in state.items()}
    exp = {"<m%d@example.org>" % n: set(fl) for n, fl in want.items()}
    assert got == exp


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
def test_mbsync_two_way(imap_server, tmp_path, tls):
    srv = imap_server
    inst = srv.instance
    msgs = {n: sample(n, body=b"body of message %d\n" % n + b"filler line\n" * (n * 40))
            for n in range(1, 13)}
    # INBOX: 1 new, 2 new, 3 seen, 4 new, 5 new, 6 flagged
    for n in (1, 2, 4, 5):
        put(inst, ALICE, msgs[n], name="17000000%02d.M%dP1.mbsync" % (n, n))
    put(inst, ALICE, msgs[3], name="1700000003.M3P1.mbsync", flags="S")
    put(inst, ALICE, msgs[6], name="1700000006.M6P1.mbsync", flags="F")
    # a folder made over IMAP with one message
    with srv.conn() as c:
        c.login()
        c.ok('CREATE "Work"')
        c.append("Work", wire(msgs[10]), flags="\\Seen")
        c.logout()

    mb = Mbsync(srv, tmp_path, tls=tls)
    mb.sync()
    # every server folder is now a local one, with the same messages and flags
    assert set(SPECIAL_FOLDERS) | {"Work"} <= set(mb.near_folders()), mb.near_folders()
    inbox = both_sides(srv, mb, "INBOX")
    expect(inbox, {1: (), 2: (), 3: {"\\Seen"}, 4: (), 5: (), 6: {"\\Flagged"}})
    assert inbox["<m1@example.org>"][1] == lf(msgs[1])
    expect(both_sides(srv, mb, "Work"), {10: {"\\Seen"}})
    for f in SPECIAL_FOLDERS:
        assert both_sides(srv, mb, f) == {}

    # changes on the server: \Seen on 1, 2 deleted and expunged, 7 appended (flagged)
    uid = {message_id(b): u for u, _, b in server_folder(srv)}
    with srv.conn() as c:
        c.login()
        c.select("INBOX")
        c.ok("UID STORE %d +FLAGS.SILENT (\\Seen)" % uid["<m1@example.org>"])
        c.ok("UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid["<m2@example.org>"])
        c.ok("EXPUNGE")
        c.append("INBOX", wire(msgs[7]), flags="\\Flagged")
        c.logout()
    # changes here: 3 answered, 4 removed, 5 trashed (T: expunged by mbsync),
    # 8 new, a new folder Projects with 9
    near = mb.folder("INBOX")

    def rename(msgid, letters):
        old = maildir_file(near, msgid)
        base = os.path.basename(old).split(":2,")[0]
        os.rename(os.path.join(near, old), os.path.join(near, "cur", base + ":2," + letters))

    rename("<m3@example.org>", "RS")
    os.unlink(os.path.join(near, maildir_file(near, "<m4@example.org>")))
    rename("<m5@example.org>", "T")
    with open(os.path.join(near, "new", "1700000100.P1Q1.near"), "wb") as f:
        f.write(msgs[8])
    proj = mb.folder("Projects")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(proj, sub))
    with open(os.path.join(proj, "cur", "1700000101.P1Q2.near:2,S"), "wb") as f:
        f.write(msgs[9])

    mb.sync()
    inbox = both_sides(srv, mb, "INBOX")
    expect(inbox, {1: {"\\Seen"}, 3: {"\\Seen", "\\Answered"}, 6: {"\\Flagged"},
                   7: {"\\Flagged"}, 8: ()})
    for n in (1, 3, 6, 7, 8):
        assert inbox["<m%d@example.org>" % n][1] == lf(msgs[n]), n
    assert "Projects" in server_folders(srv)
    expect(both_sides(srv, mb, "Projects"), {9: {"\\Seen"}})
    expect(both_sides(srv, mb, "Work"), {10: {"\\Seen"}})
    # the deleted ones are gone from the server's Maildir too
    files = [n for s in ("new", "cur")
             for n in listdir(os.path.join(folder_dir(inst, ALICE), s))]
    assert len(files) == 5, files

    # a third run changes nothing
    before = {f: both_sides(srv, mb, f) for f in ("INBOX", "Work", "Projects")}
    mb.sync()
    after = {f: both_sides(srv, mb, f) for f in ("INBOX", "Work", "Projects")}
    assert before == after


def test_mbsync_after_restart(imap_inst, imap_start, tmp_path):
    """UIDVALIDITY and UIDs survive a restart of the server: mbsync (which
    refuses to sync a box whose UIDVALIDITY changed) goes on where it was,
    and mail that arrived meanwhile (over SMTP) is fetched."""
    srv = imap_start(imap_inst)
    msgs = {n: sample(n) for n in range(1, 5)}
    for n in (1, 2, 3):
        put(imap_inst, ALICE, msgs[n], name="17000000%02d.M%dP1.restart" % (n, n))
    mb = Mbsync(srv, tmp_path)
    mb.sync()
    expect(both_sides(srv, mb, "INBOX"), {1: (), 2: (), 3: ()})
    with srv.conn() as c:
        c.login()
        r = c.select("INBOX")
        validity = r.find(r"UIDVALIDITY")
        c.logout()
    srv.stop()

    srv = imap_start(imap_inst)
    with srv.conn() as c:
        c.login()
        r = c.select("INBOX")
        assert r.find(r"UIDVALIDITY") == validity, (validity, r)
        c.logout()
    srv.deliver(ALICE, msgs[4])
    mb.configure(srv)
    cp = mb.sync()
    out = (cp.stdout + cp.stderr).decode("utf-8", "replace")
    assert "UIDVALIDITY" not in out or "changed" not in out, out
    inbox = both_sides(srv, mb, "INBOX")
    expect(inbox, {1: (), 2: (), 3: (), 4: ()})
    # the three first kept their UIDs: mbsync did not fetch them again
    assert sorted(u for u, _, _ in server_folder(srv)) == [1, 2, 3, 4]
    assert len([n for s in ("new", "cur") for n in listdir(os.path.join(mb.inbox, s))]) == 4


# --------------------------------------------------------------------------
# mutt (in a detached tmux session: it needs a terminal, CI has none)


class Mutt:
    def __init__(self, srv, tmp_path, tls=False):
        self.bin = need("mutt", "mutt")
        self.tmux = need("tmux", "tmux")
        self.srv = srv
        self.dir = str(tmp_path / "mutt")
        os.makedirs(self.dir)
        self.rc = os.path.join(self.dir, "muttrc")
        self.sock = os.path.join(self.dir, "tmux.sock")
        if tls:
            # mutt trusts the certificates in certificate_file (a copy: mutt
            # may write to it) and checks the host name (IP SAN 127.0.0.1)
            certs = os.path.join(self.dir, "certificates")
            shutil.copy(cert_path(srv.instance), certs)
            folder = "imaps://%s:%d/" % (srv.host, srv.ssl_port)
            ssl = ('set certificate_file="%s"\nset ssl_verify_host=yes\n'
                   'set ssl_force_tls=yes\n' % certs)
        else:
            folder = "imap://%s:%d/" % (srv.host, srv.port)
            ssl = "set ssl_starttls=no\nset ssl_force_tls=no\n"
        with open(self.rc, "w") as f:
            f.write('set imap_user="%s"\nset imap_pass="%s"\n'
                    'set folder="%s"\nset spoolfile="+INBOX"\n%s'
                    'set header_cache=""\nset message_cachedir=""\n'
                    'set record=""\nset postponed="+Drafts"\nset mbox="+INBOX"\n'
                    'set move=no\nset mark_old=no\nset confirmappend=no\n'
                    'set confirmcreate=no\nset delete=yes\nset quit=yes\n'
                    'set wait_key=no\nset beep=no\nset pipe_decode=no\n'
                    'set sort=date-sent\nset imap_check_subscribed=no\n'
                    'set timeout=5\nset connect_timeout=15\nset pager_stop=yes\n'
                    % (ALICE, PASSWORD, folder, ssl))
        os.chmod(self.rc, 0o600)

    def tmux_cmd(self, *args, check=True):
        env = dict(os.environ, HOME=self.dir, TERM="xterm", LC_ALL="C.UTF-8")
        cp = subprocess.run([self.tmux, "-S", self.sock, "-f", "/dev/null"] + list(args),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, timeout=20)
        if check:
            assert cp.returncode == 0, (args, cp.stderr)
        return cp

    def screen(self):
        cp = self.tmux_cmd("capture-pane", "-p", "-t", "mutt", check=False)
        return cp.stdout.decode("utf-8", "replace")

    def run(self, push, timeout=60):
        """Run mutt on INBOX with `push` as its keys; wait (bounded) until it
        exits; its exit status."""
        done = os.path.join(self.dir, "exit-status")
        script = os.path.join(self.dir, "run.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\n%s -n -F '%s' -e '%s'\necho $? > '%s.tmp'\n"
                    "mv '%s.tmp' '%s'\nsleep 30\n"
                    % (self.bin, self.rc, push.replace("'", "'\\''"), done, done, done))
        os.chmod(script, 0o755)
        self.tmux_cmd("new-session", "-d", "-s", "mutt", "-x", "160", "-y", "50", script)
        last = ""
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if os.path.exists(done):
                    with open(done) as f:
                        return int(f.read().strip() or "-1")
                last = self.screen() or last
                time.sleep(0.2)
            pytest.fail("mutt did not finish within %ss; its screen:\n%s\nserver log:\n%s"
                        % (timeout, last, self.srv.log()))
        finally:
            # our private tmux server only (its own socket), with mutt in it
            self.tmux_cmd("kill-server", check=False)


    def start(self, extra=""):
        """Start mutt on INBOX interactively (extra: more muttrc lines);
        drive it with keys() and watch it with wait_screen()."""
        with open(self.rc, "a") as f:
            f.write(extra)
        script = os.path.join(self.dir, "interactive.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nexec %s -n -F '%s'\n" % (self.bin, self.rc))
        os.chmod(script, 0o755)
        self.tmux_cmd("new-session", "-d", "-s", "mutt", "-x", "160", "-y", "50", script)

    def keys(self, *keys):
        self.tmux_cmd("send-keys", "-t", "mutt", *keys)

    def wait_screen(self, pattern, timeout=20):
        """The screen once it matches the regex pattern (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            scr = self.screen()
            if re.search(pattern, scr, re.M):
                return scr
            if time.monotonic() > deadline:
                pytest.fail("mutt's screen did not show %r within %ss:\n%s\nserver log:\n%s"
                            % (pattern, timeout, scr, self.srv.log()))
            time.sleep(0.2)

    def stop(self):
        self.tmux_cmd("kill-server", check=False)


@pytest.mark.parametrize("tls,deflate", [(False, False), (True, False), (True, True)],
                         ids=["imap", "imaps", "imaps-compress"])
def test_mutt_read_and_move(imap_server, tmp_path, tls, deflate):
    srv = imap_server
    msgs = [sample(1), sample(2, subject=b"move me please",
                              body=b"the one to move\n.\nmore text\n"), sample(3)]
    fill_inbox(srv, msgs)
    mutt = Mutt(srv, tmp_path, tls=tls)
    if deflate:
        # mutt's own RFC 4978 COMPRESS=DEFLATE, over TLS
        with open(mutt.rc, "a") as f:
            f.write("set imap_deflate=yes\n")
    out = os.path.join(mutt.dir, "piped.eml")
    push = ("<limit>~s move.me<enter><first-entry><display-message><exit>"
            "<pipe-message>cat > %s<enter>"
            "<save-message>=Archive<enter><sync-mailbox><quit>" % out)
    rc = mutt.run("push \"%s\"" % push)
    assert rc == 0, "mutt exited %s\nserver log:\n%s" % (rc, srv.log())
    compressed = "COMPRESS=DEFLATE active" in srv.log()
    assert compressed == deflate, srv.log()

    # mutt read the message: what it piped is the message
    with open(out, "rb") as f:
        piped = f.read()
    assert lf(piped) == lf(msgs[1]), piped
    # server side: gone from INBOX (the others untouched), in Archive with \Seen
    inbox = server_folder(srv, "INBOX")
    assert [(uid, set(fl), b) for uid, fl, b in inbox] == \
        [(1, set(), wire(msgs[0])), (3, set(), wire(msgs[2]))], inbox
    archive = server_folder(srv, "Archive")
    assert len(archive) == 1, archive
    assert "\\Seen" in archive[0][1] and "\\Deleted" not in archive[0][1], archive
    assert archive[0][2] == wire(msgs[1])
    # and in the Maildir: one file in .Archive/cur with S in its info
    d = folder_dir(srv.instance, ALICE, "Archive")
    assert listdir(os.path.join(d, "new")) == []
    names = listdir(os.path.join(d, "cur"))
    assert len(names) == 1 and "S" in names[0].split(":2,")[1], names
    with open(os.path.join(d, "cur", names[0]), "rb") as f:
        assert lf(f.read()) == lf(msgs[1])
    assert len([n for s in ("new", "cur")
                for n in listdir(os.path.join(folder_dir(srv.instance, ALICE), s))]) == 2


def test_mutt_idle_new_mail(imap_server, tmp_path):
    """mutt idling on INBOX (imap_idle) shows a message delivered over SMTP
    meanwhile; then it reads it and quits, and the server has it \\Seen."""
    srv = imap_server
    fill_inbox(srv, [sample(1), sample(2)])
    mutt = Mutt(srv, tmp_path)
    mutt.start("set imap_idle=yes\nset mail_check=1\nset timeout=1\n")
    try:
        mutt.wait_screen(r"Msgs:2 New:2")
        srv.deliver(ALICE, b"From: someone@example.org\r\nTo: alice@example.test\r\n"
                    b"Subject: wake up while idle\r\nMessage-ID: <idle@example.org>\r\n"
                    b"\r\nnew mail\r\n")
        scr = mutt.wait_screen(r"Msgs:3 New:3")
        assert "wake up while idle" in scr, scr
        # read it (the newest is the last entry), back to the index, quit
        mutt.keys("End")
        mutt.keys("Enter")
        mutt.wait_screen(r"^new mail")
        mutt.keys("q")
        mutt.wait_screen(r"Msgs:3 ")
        mutt.keys("q")
        deadline = time.monotonic() + 20
        while mutt.tmux_cmd("has-session", "-t", "mutt", check=False).returncode == 0:
            assert time.monotonic() < deadline, mutt.screen()
            time.sleep(0.2)
    finally:
        mutt.stop()
    got = {message_id(b): set(fl) for _, fl, b in server_folder(srv)}
    assert got == {"<m1@example.org>": set(), "<m2@example.org>": set(),
                   "<idle@example.org>": {"\\Seen"}}, got


# --------------------------------------------------------------------------
# the Exim howto's telnet session


DES_HASH = "jnk.l3QByZvdk"   # Exim howto: ENCRYPT('lrepsak')
DES_PASSWORD = "lrepsak"


def make_maildir(inst, address):
    """The maildir of a user inserted by SQL (as the howto's administrator
    would with maildirmake), owned like the mail root."""
    local, domain = address.split("@")
    md = os.path.join(inst.mail_root, domain, local)
    st = os.stat(inst.mail_root)
    for d in (os.path.join(inst.mail_root, domain), md) + tuple(
            os.path.join(md, s) for s in ("cur", "new", "tmp")):
        os.makedirs(d, exist_ok=True)
        os.chown(d, st.st_uid, st.st_gid)
    return md


class Telnet:
    """Exactly what a person types into telnet: lines, and the lines that come back."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=15)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed by the server (pending %r)" % self.buf)
            self.buf += chunk
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l.decode("utf-8", "replace")

    def type(self, text, tag):
        """Send a line; the lines up to the tagged reply (included)."""
        self.sock.sendall(text.encode() + b"\r\n")
        out = []
        while True:
            out.append(self.line())
            if out[-1].startswith(tag + " "):
                return out

    def rest(self):
        self.sock.settimeout(10)
        data = self.buf
        while True:
            chunk = self.sock.recv(4096)
            if not chunk:
                return data
            data += chunk


def howto_session(srv, login, password, exists, recent):
    t = Telnet(srv.host, srv.port)
    try:
        greeting = t.line()
        assert re.match(r"^\* OK( \[CAPABILITY [^\]]*IMAP4rev1[^\]]*\])? ", greeting), greeting
        a = t.type("A login %s %s" % (login, password), "A")
        assert a[-1].startswith("A OK"), a
        assert all(l.startswith("* ") for l in a[:-1]), a
        b = t.type("B select INBOX", "B")
        assert re.match(r"^B OK \[READ-WRITE\]", b[-1]), b
        untagged = b[:-1]
        assert all(l.startswith("* ") for l in untagged), b

        def one(rx):
            found = [re.match(rx, l, re.I) for l in untagged]
            found = [m for m in found if m]
            assert len(found) == 1, "%s: %r" % (rx, b)
            return found[0]

        flags = set(one(r"^\* FLAGS \(([^)]*)\)$").group(1).split())
        assert SYSTEM_FLAGS <= flags, flags
        perm = set(one(r"^\* OK \[PERMANENTFLAGS \(([^)]*)\)\]").group(1).split())
        assert SYSTEM_FLAGS <= perm and "\\Recent" not in perm, perm
        uidvalidity = int(one(r"^\* OK \[UIDVALIDITY (\d+)\]").group(1))
        assert 0 < uidvalidity < 2 ** 32
        assert int(one(r"^\* (\d+) EXISTS$").group(1)) == exists, b
        assert int(one(r"^\* (\d+) RECENT$").group(1)) == recent, b
        one(r"^\* OK \[UIDNEXT (\d+)\]")
        if exists and recent:
            # RFC 3501 6.3.1: the first unseen message (all are unseen here)
            assert int(one(r"^\* OK \[UNSEEN (\d+)\]").group(1)) == 1
        c = t.type("C logout", "C")
        assert len(c) == 2 and c[0].startswith("* BYE"), c
        assert c[1].startswith("C OK"), c
        assert t.rest() == b""
    finally:
        t.sock.close()
    return uidvalidity


def test_exim_howto_telnet_des(instance, imap_start):
    """Users whose crypt column is a traditional DES hash (MySQL ENCRYPT()):
    the howto's own hash and one made by crypt(3) with a 2-character salt."""
    crypt = pycrypt()
    assert crypt is not None, "python3's crypt module is needed (Debian 12's python3.11 has it)"
    made = crypt.crypt("s3cret!", "Qx")
    assert len(made) == 13, made
    users = [("kasper@example.test", DES_HASH, DES_PASSWORD),
             ("des@example.test", made, "s3cret!")]
    for addr, h, _ in users:
        instance.insert_user(addr, addr, h, name="Howto user")
        md = make_maildir(instance, addr)
        st = os.stat(md)
        for i in range(2):
            p = os.path.join(md, "new", "17000000%02d.M%dP1.howto" % (i, i))
            with open(p, "wb") as f:
                f.write(sample(i + 1))
            os.chown(p, st.st_uid, st.st_gid)
    srv = imap_start(instance)
    for addr, _, password in users:
        # first session: both messages are new (\Recent), then moved to cur/
        v1 = howto_session(srv, addr, password, exists=2, recent=2)
        # second: the same messages, no longer recent, same UIDVALIDITY
        v2 = howto_session(srv, addr, password, exists=2, recent=0)
        assert v1 == v2
        local, domain = addr.split("@")
        md = os.path.join(instance.mail_root, domain, local)
        assert listdir(os.path.join(md, "new")) == []
        assert len(listdir(os.path.join(md, "cur"))) == 2
    # a howto user who has never had mail: no maildir yet; it is made at
    # the first login and INBOX is empty
    fresh = "fresh@example.test"
    instance.insert_user(fresh, fresh, crypt.crypt("n3w-user", "F7"))
    md = os.path.join(instance.mail_root, "example.test", "fresh")
    assert not os.path.exists(md)
    v1 = howto_session(srv, fresh, "n3w-user", exists=0, recent=0)
    assert howto_session(srv, fresh, "n3w-user", exists=0, recent=0) == v1
    for sub in ("cur", "new", "tmp"):
        assert os.path.isdir(os.path.join(md, sub)), sub
    # a wrong password for the DES user is refused
    t = Telnet(srv.host, srv.port)
    try:
        t.line()
        a = t.type("A login kasper@example.test lrepsaK", "A")
        assert a[-1].startswith("A NO"), a
        c = t.type("C logout", "C")
        assert c[-1].startswith("C OK"), c
    finally:
        t.sock.close()
