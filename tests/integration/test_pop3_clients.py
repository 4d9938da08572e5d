"""Real POP3 clients against petrel: fetchmail (into an MDA) and curl, plain,
STLS and implicit TLS. SQLite and MariaDB. Needs the Debian packages
`fetchmail` and `curl`."""

import os
import shutil
import subprocess

import pytest

from pop3_util import ALICE, PASSWORD, all_files, maildir_of, message, pquit, put, wire

RUN_TIMEOUT = 60


def need(prog, package):
    path = shutil.which(prog)
    if path is None:
        pytest.fail("%s not found: apt-get install %s" % (prog, package))
    return path


def lf(data):
    return data.replace(b"\r\n", b"\n")


def stored(inst, user=ALICE):
    """{uidl: file contents} of every message in the user's maildir."""
    md = maildir_of(inst, user)
    out = {}
    for sub in ("new", "cur"):
        for n in sorted(os.listdir(os.path.join(md, sub))):
            with open(os.path.join(md, sub, n), "rb") as f:
                out[n.split(":")[0]] = f.read()
    return out


def sample_messages(srv):
    """Three hand-made messages (dots, long and 8-bit lines, no final newline)
    and one delivered over SMTP; their contents in delivery order."""
    inst = srv.instance
    put(inst, ALICE, message(1, body=b".\n..two\n.three\nplain\n"), name="1680000001.M1P1.c")
    put(inst, ALICE, message(2, body=b"x" * 5000 + b"\n\xc3\xa9\xff\n"), name="1680000002.M1P1.c")
    put(inst, ALICE, message(3, body=b"no newline at the end"), name="1680000003.M1P1.c")
    srv.smtp_send("someone@example.org", [ALICE],
                  b"From: someone@example.org\r\nSubject: via smtp\r\n\r\nhello\r\n.\r\n..\r\n")
    return list(stored(inst).values())


# --------------------------------------------------------------------------
# fetchmail


class Fetchmail:
    def __init__(self, srv, tmp_path):
        self.bin = need("fetchmail", "fetchmail")
        self.srv = srv
        self.dir = str(tmp_path / "fetchmail")
        self.out = os.path.join(self.dir, "out")
        os.makedirs(self.out)
        self.mda = os.path.join(self.dir, "mda.sh")
        with open(self.mda, "w") as f:
            # one numbered file per message, in the order fetchmail delivers them
            f.write('#!/bin/sh\nn=$(ls "%s" | wc -l)\nexec cat > "%s/msg.$(printf %%04d "$n")"\n'
                    % (self.out, self.out))
        os.chmod(self.mda, 0o755)
        self.cert = srv.instance.config()["tls_cert"]
        if not os.path.isabs(self.cert):
            self.cert = os.path.join(srv.instance.dir, self.cert)

    def run(self, mode="plain", keep=False, fetchall=True, password=PASSWORD):
        if mode == "plain":
            port, tls = self.srv.port, "sslproto ''"
        else:
            # full certificate check against the instance's self-signed cert
            # (its subjectAltName has DNS:localhost)
            port = self.srv.ssl_port if mode == "ssl" else self.srv.port
            tls = ("%ssslproto 'TLS1.2+' sslcertck sslcertfile '%s' sslcommonname localhost"
                   % ("ssl " if mode == "ssl" else "", self.cert))
        rc = os.path.join(self.dir, "fetchmailrc")
        with open(rc, "w") as f:
            f.write("set no bouncemail\n"
                    "poll 127.0.0.1 port %d protocol pop3 auth password timeout 20\n"
                    "  user '%s' there with password '%s' is 'root' here\n"
                    "  options %s %s %s no rewrite\n"
                    "  mda \"%s\"\n"
                    % (port, ALICE, password, "keep" if keep else "no keep",
                       "fetchall" if fetchall else "no fetchall", tls, self.mda))
        os.chmod(rc, 0o600)
        env = dict(os.environ, HOME=self.dir, FETCHMAILHOME=self.dir, LC_ALL="C")
        cmd = [self.bin, "--nodetach", "--nosyslog", "--invisible", "-v", "-f", rc,
               "--idfile", os.path.join(self.dir, "fetchids"),
               "--pidfile", os.path.join(self.dir, "fetchmail.pid")]
        try:
            return subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            pytest.fail("fetchmail did not finish in %ss\n%s\nserver log:\n%s"
                        % (RUN_TIMEOUT, e.stdout, self.srv.log()))

    def delivered(self):
        out = []
        for n in sorted(os.listdir(self.out)):
            with open(os.path.join(self.out, n), "rb") as f:
                out.append(f.read())
        return out

    def clear(self):
        for n in os.listdir(self.out):
            os.unlink(os.path.join(self.out, n))


def describe(cp, srv):
    return "fetchmail exit %s\n%s\nserver log:\n%s" % (
        cp.returncode, cp.stdout.decode("utf-8", "replace"), srv.log())


def expect_same(got, want):
    """Byte for byte modulo CRLF (the MDA gets LF), a final newline added
    where the stored message had none."""
    want = [lf(w) if w.endswith(b"\n") else lf(w) + b"\n" for w in want]
    assert [lf(g) for g in got] == want


def test_fetchmail_keep_then_fetch_and_delete(pop3_server, tmp_path):
    msgs = sample_messages(pop3_server)
    inst = pop3_server.instance
    fm = Fetchmail(pop3_server, tmp_path)
    # keep: everything arrives and stays on the server
    cp = fm.run(keep=True, fetchall=False)
    assert cp.returncode == 0, describe(cp, pop3_server)
    expect_same(fm.delivered(), msgs)
    assert list(stored(inst).values()) == msgs
    # again, keep, not fetchall: the UIDLs say there is nothing new (exit 1)
    fm.clear()
    cp = fm.run(keep=True, fetchall=False)
    assert cp.returncode == 1, describe(cp, pop3_server)
    assert fm.delivered() == []
    # new mail: only that one is fetched
    new = message(9, body=b"the new one\n")
    put(inst, ALICE, new, name="1690000001.M1P1.c")
    cp = fm.run(keep=True, fetchall=False)
    assert cp.returncode == 0, describe(cp, pop3_server)
    expect_same(fm.delivered(), [new])
    # without keep: everything is fetched and deleted from the maildir
    msgs = list(stored(inst).values())
    assert len(msgs) == 5
    fm.clear()
    cp = fm.run(keep=False, fetchall=True)
    assert cp.returncode == 0, describe(cp, pop3_server)
    expect_same(fm.delivered(), msgs)
    assert all_files(inst, ALICE) == {"new": [], "cur": []}


@pytest.mark.parametrize("mode", ["stls", "ssl"])
def test_fetchmail_tls(pop3_server, tmp_path, mode):
    msgs = sample_messages(pop3_server)
    fm = Fetchmail(pop3_server, tmp_path)
    cp = fm.run(mode, keep=False)
    assert cp.returncode == 0, describe(cp, pop3_server)
    text = cp.stdout.decode("utf-8", "replace")
    if mode == "stls":
        assert "POP3> STLS" in text, text
    assert "PASS" in text and "upgrade to TLS failed" not in text, text
    expect_same(fm.delivered(), msgs)
    assert all_files(pop3_server.instance, ALICE) == {"new": [], "cur": []}


def test_fetchmail_wrong_password(pop3_server, tmp_path):
    put(pop3_server.instance, ALICE, message(1))
    fm = Fetchmail(pop3_server, tmp_path)
    cp = fm.run(password="wrong")
    assert cp.returncode == 3, describe(cp, pop3_server)  # 3 = authentication failed
    assert fm.delivered() == []
    assert len(all_files(pop3_server.instance, ALICE)["new"]) == 1


# --------------------------------------------------------------------------
# curl


def curl(*args, check=True):
    cmd = [need("curl", "curl"), "-sS", "--max-time", "30", "-u", "%s:%s" % (ALICE, PASSWORD)]
    cmd += list(args)
    try:
        cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("curl did not finish: %s" % cmd)
    if check:
        assert cp.returncode == 0, "%s -> %s\n%s" % (cmd, cp.returncode, cp.stderr)
    return cp


def test_curl(pop3_server):
    msgs = sample_messages(pop3_server)
    base = "pop3://127.0.0.1:%d" % pop3_server.port
    sizes = [len(wire(m)) for m in msgs]
    # list (the sizes are checked at the end)
    listing = curl(base + "/").stdout
    assert [l.split()[0] for l in listing.splitlines()] == [b"1", b"2", b"3", b"4"]
    # retrieve: curl undoes the byte-stuffing
    for i, m in enumerate(msgs):
        got = curl("%s/%d" % (base, i + 1)).stdout
        assert lf(got) == (lf(m) if m.endswith(b"\n") else lf(m) + b"\n"), i
        assert got == wire(m) or not m.endswith(b"\n")
    # SASL-IR (AUTH PLAIN with the initial response)
    assert curl("--sasl-ir", base + "/1").stdout == wire(msgs[0])
    # STLS, required
    assert curl("--ssl-reqd", "-k", base + "/2").stdout == wire(msgs[1])
    # implicit TLS
    ssl_base = "pop3s://127.0.0.1:%d" % pop3_server.ssl_port
    assert curl("-k", ssl_base + "/4").stdout == wire(msgs[3])
    assert curl("-k", ssl_base + "/").stdout == listing
    # UIDL, then DELE by curl: gone from the maildir
    uidl = curl(base + "/", "-X", "UIDL").stdout
    keys = list(stored(pop3_server.instance).keys())
    assert uidl == b"".join(b"%d %s\r\n" % (i + 1, k.encode()) for i, k in enumerate(keys))
    curl(base + "/1", "-X", "DELE", "-I")
    assert list(stored(pop3_server.instance).keys()) == keys[1:]
    # a wrong password is refused (curl: 67, login denied)
    cp = curl("-u", ALICE + ":wrong", base + "/", check=False)
    assert cp.returncode == 67, cp
    # the messages are still there for poplib
    p = pop3_server.login()
    assert p.stat()[0] == 3
    pquit(p)
    # LIST gives each message's size with CRLF line ends
    assert listing == b"".join(b"%d %d\r\n" % (i + 1, s) for i, s in enumerate(sizes))
