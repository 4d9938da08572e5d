"""The IMAP and POP3 servers petrel replaces, run on a maildir for the
migration round trip (test_migration_roundtrip.py): Dovecot 2.3,
Courier-IMAP 5 and Courier's pop3d from Debian 12's packages, unpacked by
scripts/install-legacy-imap.sh into $PETREL_LEGACY_DIR (default
/opt/petrel-legacy), never installed.

Each is served on a free 127.0.0.1 port by a small inetd in this process:
every connection runs the server's own post-login binary (IMAP or POP3)
with pipes to the socket as its stdin and stdout, already logged in
(PREAUTH; POP3 in the TRANSACTION state) on the given maildir, as the given
account (Dovecot refuses to run as root). Minimal configuration in a
temporary directory; nothing of the system's is read.

- available() -> None or the reason the servers are missing.
- LegacyImap(kind, maildir, workdir, uid, gid, protocol="imap"): start() /
  stop(); imaplib() -> an imaplib.IMAP4 in the authenticated state;
  poplib() -> a poplib.POP3 in the TRANSACTION state (protocol="pop3");
  prefix is the personal namespace ("" for Dovecot as configured here,
  "INBOX." for Courier).
"""

import imaplib
import os
import poplib
import socket
import subprocess
import threading

from harness.conn import IO_TIMEOUT

LEGACY_DIR = os.environ.get("PETREL_LEGACY_DIR", "/opt/petrel-legacy")
KINDS = ("dovecot", "courier")
FAM_ALERT = b"* OK [ALERT] Filesystem notification initialization error"


def _path(*parts):
    return os.path.join(LEGACY_DIR, *parts)


def _libpath():
    return ":".join(_path(p) for p in ("usr/lib/x86_64-linux-gnu", "usr/lib",
                                        "usr/lib/dovecot"))


def available():
    """None when both servers are unpacked, else what is missing."""
    for p in ("usr/bin/doveconf", "usr/lib/dovecot/imap", "usr/bin/imapd",
              "usr/lib/dovecot/pop3", "usr/lib/courier/courier/courierpop3d"):
        if not os.access(_path(p), os.X_OK):
            return ("%s not found: run scripts/install-legacy-imap.sh "
                    "(scripts/install-deps.sh --test)" % _path(p))
    return None


class LegacyImap:
    def __init__(self, kind, maildir, workdir, uid, gid, protocol="imap"):
        assert kind in KINDS and protocol in ("imap", "pop3")
        self.kind = kind
        self.protocol = protocol
        self.maildir = os.path.abspath(maildir)
        self.dir = os.path.abspath(workdir)
        self.uid, self.gid = uid, gid
        self.prefix = "INBOX." if kind == "courier" else ""
        self.port = None
        self._sock = None
        self._thread = None
        self._procs = []
        self._lock = threading.Lock()
        self.errors = []
        os.makedirs(self.dir, exist_ok=True)
        os.chown(self.dir, uid, gid)
        self._argv, self._env = self._command()

    # --- the server's command line
    def _command(self):
        env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": _libpath(),
               "HOME": self.dir, "LC_ALL": "C"}
        if self.kind == "dovecot":
            run = os.path.join(self.dir, "run")
            os.makedirs(run, exist_ok=True)
            os.chown(run, self.uid, self.gid)
            conf = os.path.join(self.dir, "dovecot.conf")
            with open(conf, "w") as f:
                f.write("mail_location = maildir:%s\n" % self.maildir
                        + "base_dir = %s\n" % run
                        + "state_dir = %s\n" % run
                        + "log_path = /dev/stderr\n"
                        + "ssl = no\n"
                        + "mail_uid = %d\nmail_gid = %d\n" % (self.uid, self.gid)
                        + "first_valid_uid = 1\nfirst_valid_gid = 1\n"
                        + "protocols = %s\n" % self.protocol)
            env["USER"] = "petreltest"
            return ([_path("usr/bin/doveconf"), "-c", conf, "-m", self.protocol, "-e",
                     _path("usr/lib/dovecot", self.protocol)], env)
        if self.protocol == "pop3":
            # courierpop3d refuses a home (its working directory) with the
            # sticky bit: self.dir is the account's own
            env.update({"AUTHENTICATED": "petreltest", "MAILDIR": self.maildir,
                        "TCPREMOTEIP": "127.0.0.1"})
            return ([_path("usr/lib/courier/courier/courierpop3d"), self.maildir], env)
        env.update({"AUTHENTICATED": "petreltest", "MAILDIR": self.maildir,
                    "IMAP_KEYWORDS": "1", "IMAP_ENHANCEDIDLE": "0",
                    "IMAP_USELOCKS": "1", "IMAP_MOVE_EXPUNGE_TO_TRASH": "0",
                    "IMAP_CAPABILITY": "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE IDLE",
                    "TCPREMOTEIP": "127.0.0.1"})
        return ([_path("usr/bin/imapd"), self.maildir], env)

    def _drop(self):
        if os.geteuid() == 0 and self.kind == "courier":
            os.setgroups([])
            os.setgid(self.gid)
            os.setuid(self.uid)

    # --- the inetd
    def start(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def _accept(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            err = open(os.path.join(self.dir, "server.log"), "ab")
            with err:
                # pipes, not the socket: Dovecot's imap refuses a socket
                # on stdin (it would be started by inetd)
                p = subprocess.Popen(self._argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=err,
                                     env=self._env, cwd=self.dir,
                                     preexec_fn=self._drop, close_fds=True)
            with self._lock:
                self._procs.append(p)
            threading.Thread(target=self._to_server, args=(conn, p),
                             daemon=True).start()
            threading.Thread(target=self._to_client, args=(conn, p),
                             daemon=True).start()

    @staticmethod
    def _to_server(conn, p):
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                p.stdin.write(data)
                p.stdin.flush()
        except OSError:
            pass
        finally:
            try:
                p.stdin.close()
            except OSError:
                pass

    def _to_client(self, conn, p):
        try:
            if self.kind == "dovecot" and self.protocol == "pop3":
                # Dovecot's pop3 started by hand (not by pop3-login, which
                # says "+OK Logged in." before handing over) greets with
                # nothing: say it here, as pop3-login does
                conn.sendall(b"+OK Logged in.\r\n")
            first = p.stdout.readline()
            # Courier's imapd warns at every start that it has no FAM
            # daemon (gam_server, for IDLE; none runs here): not part of
            # the protocol exchange under test
            if not first.startswith(FAM_ALERT):
                conn.sendall(first)
            while True:
                data = p.stdout.read1(65536)
                if not data:
                    break
                conn.sendall(data)
        except OSError:
            pass
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def log(self):
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def imaplib(self, timeout=IO_TIMEOUT):
        m = imaplib.IMAP4("127.0.0.1", self.port, timeout=timeout)
        assert m.state == "AUTH", "expected PREAUTH from %s: %r\n%s" % (
            self.kind, m.welcome, self.log())
        return m

    def poplib(self, timeout=IO_TIMEOUT):
        p = poplib.POP3("127.0.0.1", self.port, timeout=timeout)
        assert p.welcome.startswith(b"+OK"), "%s: %r\n%s" % (self.kind, p.welcome, self.log())
        return p

    def stop(self):
        """Close the listener and wait (bounded) for every session to end;
        a session still running is killed and counted as an error."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            procs, self._procs = self._procs, []
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                self.errors.append("%s session pid %d did not end" % (self.kind, p.pid))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
