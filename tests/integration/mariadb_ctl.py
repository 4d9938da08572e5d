#!/usr/bin/env python3
"""Manage a private, throw-away MariaDB server for petrel's tests.

Usable as a module (init/start/stop/sql/...) and as a command-line tool:

    python3 mariadb_ctl.py init DIR          # mariadb-install-db into DIR/data
    python3 mariadb_ctl.py start DIR [PORT]  # start mariadbd, wait until it answers
    python3 mariadb_ctl.py stop DIR          # SIGTERM it, wait until it has exited
    python3 mariadb_ctl.py status DIR        # exit 0 if it answers, 1 if not
    python3 mariadb_ctl.py sql DIR [DB] SQL  # run SQL as root, print rows tab-separated

Layout of DIR: data/ (datadir), mysql.sock, mysqld.pid, err.log, port (the TCP
port, kept so that "start" after "stop" reuses it), tmp/.

No system MariaDB service is used or touched: the server runs with
--no-defaults, its own datadir, socket, pid file and a loopback port.
Only the Python standard library is used.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

MARIADBD = os.environ.get("MARIADBD", "/usr/sbin/mariadbd")
INSTALL_DB = os.environ.get("MARIADB_INSTALL_DB", "/usr/bin/mariadb-install-db")
CLIENT = os.environ.get("MARIADB_CLIENT", "/usr/bin/mariadb")

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


class MariaDBError(Exception):
    pass


def _which(path, name):
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    found = shutil.which(name)
    if found:
        return found
    # /usr/sbin is not always on PATH
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def binaries():
    """Return (mariadbd, mariadb-install-db, mariadb) or raise MariaDBError naming what is missing."""
    d = _which(MARIADBD, "mariadbd") or _which("/usr/sbin/mysqld", "mysqld")
    i = _which(INSTALL_DB, "mariadb-install-db") or _which("/usr/bin/mysql_install_db", "mysql_install_db")
    c = _which(CLIENT, "mariadb") or _which("/usr/bin/mysql", "mysql")
    missing = [n for n, p in (("mariadbd", d), ("mariadb-install-db", i), ("mariadb (client)", c)) if not p]
    if missing:
        raise MariaDBError(
            "MariaDB is not installed (missing: %s); install mariadb-server and mariadb-client "
            "(apt-get install mariadb-server)" % ", ".join(missing))
    return d, i, c


def paths(d):
    d = os.path.abspath(d)
    return {
        "dir": d,
        "data": os.path.join(d, "data"),
        "socket": os.path.join(d, "mysql.sock"),
        "pid": os.path.join(d, "mysqld.pid"),
        "log": os.path.join(d, "err.log"),
        "port": os.path.join(d, "port"),
        "tmp": os.path.join(d, "tmp"),
    }


def socket_path(d):
    return paths(d)["socket"]


def free_port():
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_port(d):
    p = paths(d)["port"]
    try:
        with open(p) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _log_tail(d, n=25):
    try:
        with open(paths(d)["log"], errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no error log)"


def init(d):
    """Create a fresh data directory in DIR/data (root@localhost, empty password)."""
    _, install_db, _ = binaries()
    p = paths(d)
    os.makedirs(p["dir"], exist_ok=True)
    os.makedirs(p["tmp"], exist_ok=True)
    if os.path.isdir(os.path.join(p["data"], "mysql")):
        return  # already initialised
    cmd = [install_db, "--no-defaults", "--datadir=" + p["data"],
           "--auth-root-authentication-method=normal", "--skip-test-db",
           "--user=root", "--skip-name-resolve"]
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=120)
    if r.returncode != 0:
        raise MariaDBError("mariadb-install-db failed (%d):\n%s" % (r.returncode, r.stdout))


def read_pid(d):
    try:
        with open(paths(d)["pid"]) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _alive(pid):
    """True if pid is a live (non-zombie) process."""
    if pid is None or pid <= 0:
        return False
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it happens to be our child
    except ChildProcessError:
        pass
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        state = stat.rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
    except (OSError, IndexError):
        return False
    return True


def ping(d, timeout=2):
    """True if the server answers on its socket."""
    _, _, client = binaries()
    p = paths(d)
    if not os.path.exists(p["socket"]):
        return False
    try:
        r = subprocess.run([client, "--no-defaults", "-uroot", "--socket=" + p["socket"],
                            "--connect-timeout=%d" % timeout, "--batch", "--skip-column-names",
                            "-e", "SELECT 1"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0 and r.stdout.strip() == "1"


def is_running(d):
    _reap()
    return _alive(read_pid(d)) and ping(d)


_children = []  # servers started by this process without detaching (reaped here)


def _reap():
    for p in list(_children):
        if p.poll() is not None:
            _children.remove(p)


def start(d, port=None, timeout=START_TIMEOUT, detach=False):
    """Start the server in DIR (initialising it if needed); return the TCP port.

    The port is taken from the argument, else DIR/port, else a free one, and
    written to DIR/port.  Waits (bounded) until the server answers on its socket.
    The server never inherits the caller's stdio (its output goes to err.log).
    With detach=True (the command-line tool) it is started through `setsid -f`
    so that it outlives the caller; otherwise it is a child of the caller in
    its own session, and the caller reaps it when it exits.
    """
    _reap()
    mariadbd, _, _ = binaries()
    p = paths(d)
    if not os.path.isdir(os.path.join(p["data"], "mysql")):
        init(d)
    os.makedirs(p["tmp"], exist_ok=True)
    if is_running(d):
        return get_port(d)
    if port is None:
        port = get_port(d)
    if port is None:
        port = free_port()
    port = int(port)
    with open(p["port"], "w") as f:
        f.write("%d\n" % port)
    # stale files from a killed server
    old = read_pid(d)
    if old is not None and not _alive(old):
        for k in ("pid", "socket"):
            try:
                os.unlink(p[k])
            except FileNotFoundError:
                pass
    cmd = [mariadbd, "--no-defaults",
           "--datadir=" + p["data"],
           "--socket=" + p["socket"],
           "--port=%d" % port,
           "--bind-address=127.0.0.1",
           "--pid-file=" + p["pid"],
           "--log-error=" + p["log"],
           "--tmpdir=" + p["tmp"],
           "--user=root",
           "--skip-name-resolve",
           "--skip-log-bin",
           "--skip-performance-schema",
           "--innodb-buffer-pool-size=16M",
           "--innodb-log-file-size=8M",
           "--innodb-flush-log-at-trx-commit=2",
           "--innodb-doublewrite=0",
           "--key-buffer-size=4M",
           "--max-connections=200",
           "--character-set-server=utf8mb4",
           "--collation-server=utf8mb4_general_ci",
           ]
    setsid = shutil.which("setsid") if detach else None
    launch = ([setsid, "-f"] if setsid else []) + cmd
    with open(os.devnull, "rb") as devnull_in, open(p["log"], "ab") as log:
        proc = subprocess.Popen(launch, stdin=devnull_in, stdout=log, stderr=log,
                                close_fds=True, start_new_session=True)
    if setsid:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    else:
        _children.append(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(d, timeout=1):
            return port
        if not setsid and proc.poll() is not None:
            break
        pid = read_pid(d)
        if pid is not None and not _alive(pid):
            break
        time.sleep(0.1)
    raise MariaDBError("mariadbd in %s did not answer within %.0f s; err.log tail:\n%s"
                       % (p["dir"], timeout, _log_tail(d)))


def stop(d, timeout=STOP_TIMEOUT):
    """SIGTERM the server of DIR and wait (bounded) until it has exited."""
    _reap()
    p = paths(d)
    pid = read_pid(d)
    if pid is None or not _alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.05)
    else:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        end = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
        if _alive(pid):
            raise MariaDBError("mariadbd pid %d in %s would not exit" % (pid, p["dir"]))
    for k in ("pid", "socket"):
        try:
            os.unlink(p[k])
        except FileNotFoundError:
            pass


def _unescape(field):
    # mariadb --batch escapes \n, \t, \\ and NUL in values
    if field == "NULL":
        return None
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 1 < len(field):
            n = field[i + 1]
            out.append({"n": "\n", "t": "\t", "0": "\0", "\\": "\\"}.get(n, "\\" + n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def sql(d, statements, database=None, check=True):
    """Run SQL as root over the socket; return the rows of the last result set
    as a list of tuples of str (NULL -> None).  `statements` is a string (may
    hold several ;-separated statements) or a list of strings."""
    _, _, client = binaries()
    if not isinstance(statements, str):
        statements = ";\n".join(s.rstrip().rstrip(";") for s in statements)
    cmd = [client, "--no-defaults", "-uroot", "--socket=" + socket_path(d),
           "--batch", "--skip-column-names", "--connect-timeout=10",
           "--default-character-set=utf8mb4"]
    if database:
        cmd.append("--database=" + database)
    r = subprocess.run(cmd, input=statements, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    if r.returncode != 0:
        if check:
            raise MariaDBError("SQL failed (%d): %s\n--- statements ---\n%s"
                               % (r.returncode, r.stderr.strip(), statements))
        return None
    rows = []
    for line in r.stdout.split("\n"):
        if line == "":
            continue
        rows.append(tuple(_unescape(f) for f in line.split("\t")))
    return rows


def sql_status(d, statements, database=None):
    """Like sql() but return (returncode, stdout, stderr) and never raise."""
    _, _, client = binaries()
    if not isinstance(statements, str):
        statements = ";\n".join(s.rstrip().rstrip(";") for s in statements)
    cmd = [client, "--no-defaults", "-uroot", "--socket=" + socket_path(d),
           "--batch", "--skip-column-names", "--connect-timeout=10"]
    if database:
        cmd.append("--database=" + database)
    r = subprocess.run(cmd, input=statements, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


def _usage():
    sys.stderr.write(__doc__)
    return 2


def main(argv):
    if len(argv) < 3:
        return _usage()
    cmd, d = argv[1], argv[2]
    try:
        if cmd == "init":
            init(d)
        elif cmd == "start":
            port = int(argv[3]) if len(argv) > 3 else None
            print(start(d, port, detach=True))
        elif cmd == "stop":
            stop(d)
        elif cmd == "status":
            return 0 if is_running(d) else 1
        elif cmd == "sql":
            if len(argv) == 4:
                rows = sql(d, argv[3])
            elif len(argv) == 5:
                rows = sql(d, argv[4], database=argv[3])
            else:
                return _usage()
            for row in rows:
                print("\t".join("NULL" if v is None else v for v in row))
        else:
            return _usage()
    except MariaDBError as e:
        sys.stderr.write("mariadb_ctl: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
