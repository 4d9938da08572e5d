"""A private three-node MariaDB Galera cluster on 127.0.0.1 for the tests.

Each node has its own directory (the layout of mariadb_ctl: data/,
mysql.sock, mysqld.pid, err.log, tmp/) plus its own my.cnf, and four free
ports: the SQL port, the group communication port (gmcast), the IST port
and the rsync SST port. The first node bootstraps the cluster
(--wsrep-new-cluster), the others join it and receive the data by rsync
SST. start() waits (bounded, PETREL_TIMEOUT_SCALE honoured) until the
cluster has three members and every node says Synced. Every mariadbd is
stopped by its PID at the end (stop()).

The object has the shape of conftest.MariaDB that make_instance() uses
(new_database(), url(), sql(), root_sql(), USER, password): its url()
lists the three nodes, node 1 first unless told otherwise.

Only the Python standard library, galera-4 (/usr/lib/galera/libgalera_smm.so),
mariadb-server and rsync.
"""

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse

import mariadb_ctl
from harness.procs import gone as process_gone

# Running as root: the nodes run as the mysql account (as a packaged
# server does). With --user=root the rsync daemon of an SST, started by
# mariadbd, would drop to "nobody" and could not write the joiner's datadir.
RUN_AS = "mysql" if os.geteuid() == 0 else None

PROVIDER = os.environ.get("GALERA_PROVIDER", "/usr/lib/galera/libgalera_smm.so")
SCALE = float(os.environ.get("PETREL_TIMEOUT_SCALE", "1"))


class GaleraError(Exception):
    pass


def available():
    """None when a cluster can be made here, else what is missing."""
    try:
        mariadb_ctl.binaries()
    except mariadb_ctl.MariaDBError as e:
        return str(e)
    if not os.path.isfile(PROVIDER):
        return "the Galera provider %s is missing (apt-get install galera-4)" % PROVIDER
    if shutil.which("rsync") is None:
        return "rsync is missing (apt-get install rsync)"
    return None


def _own(path):
    """Give path (recursively) to RUN_AS, when running as root."""
    if RUN_AS is None:
        return
    import pwd
    pw = pwd.getpwnam(RUN_AS)
    for root, dirs, files in os.walk(path):
        for name in [root] + [os.path.join(root, x) for x in dirs + files]:
            os.lchown(name, pw.pw_uid, pw.pw_gid)


class Node:
    def __init__(self, base, index, ports):
        self.index = index
        self.dir = os.path.join(base, "n%d" % index)
        self.port, self.gport, self.iport, self.sport = ports
        self.proc = None

    @property
    def socket(self):
        return mariadb_ctl.socket_path(self.dir)

    @property
    def cnf(self):
        return os.path.join(self.dir, "my.cnf")

    def write_cnf(self, gports):
        p = mariadb_ctl.paths(self.dir)
        os.makedirs(p["tmp"], exist_ok=True)
        peers = ",".join("127.0.0.1:%d" % g for g in gports)
        opts = ("gmcast.listen_addr=tcp://127.0.0.1:%d; ist.recv_addr=127.0.0.1:%d; "
                "gcache.size=16M; evs.suspect_timeout=PT3S; evs.inactive_timeout=PT6S; "
                "evs.install_timeout=PT5S; pc.wait_prim_timeout=PT30S"
                % (self.gport, self.iport))
        lines = [
            "[mysqld]",
            "datadir=%s" % p["data"],
            "socket=%s" % p["socket"],
            "port=%d" % self.port,
            "bind-address=127.0.0.1",
            "pid-file=%s" % p["pid"],
            "log-error=%s" % p["log"],
            "tmpdir=%s" % p["tmp"],
            "user=%s" % RUN_AS if RUN_AS else "",
            "skip-name-resolve",
            "skip-performance-schema",
            "innodb_buffer_pool_size=16M",
            "innodb_log_file_size=8M",
            "innodb_flush_log_at_trx_commit=2",
            "key_buffer_size=4M",
            "max_connections=200",
            "character-set-server=utf8mb4",
            "collation-server=utf8mb4_general_ci",
            # what a Galera node needs
            "binlog_format=ROW",
            "default_storage_engine=InnoDB",
            "innodb_autoinc_lock_mode=2",
            # a certification failure goes to the client at once (the
            # server's default is to retry an autocommit statement once)
            "wsrep_retry_autocommit=0",
            "wsrep_on=ON",
            "wsrep_provider=%s" % PROVIDER,
            "wsrep_cluster_name=petrel_test",
            "wsrep_cluster_address=gcomm://%s" % peers,
            'wsrep_provider_options="%s"' % opts,
            "wsrep_node_address=127.0.0.1:%d" % self.gport,
            "wsrep_node_name=node%d" % self.index,
            "wsrep_sst_method=rsync",
            "wsrep_sst_receive_address=127.0.0.1:%d" % self.sport,
            "",
        ]
        with open(self.cnf, "w") as f:
            f.write("\n".join(lines))

    def init(self):
        _, install_db, _ = mariadb_ctl.binaries()
        p = mariadb_ctl.paths(self.dir)
        if os.path.isdir(os.path.join(p["data"], "mysql")):
            return
        r = subprocess.run([install_db, "--no-defaults", "--datadir=" + p["data"],
                            "--auth-root-authentication-method=normal", "--skip-test-db",
                            "--user=" + (RUN_AS or "root"), "--skip-name-resolve"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120 * SCALE)
        _own(self.dir)
        if r.returncode != 0:
            raise GaleraError("mariadb-install-db failed (%d):\n%s" % (r.returncode, r.stdout))

    def launch(self, bootstrap=False):
        """Start mariadbd (a child in its own session); does not wait."""
        mariadbd, _, _ = mariadb_ctl.binaries()
        p = mariadb_ctl.paths(self.dir)
        for k in ("pid", "socket"):
            try:
                os.unlink(p[k])
            except FileNotFoundError:
                pass
        cmd = [mariadbd, "--defaults-file=" + self.cnf]
        if bootstrap:
            cmd.append("--wsrep-new-cluster")
        with open(p["log"], "ab"):
            pass
        _own(self.dir)
        with open(os.devnull, "rb") as devnull, open(p["log"], "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=devnull, stdout=log, stderr=log,
                                         close_fds=True, start_new_session=True)

    def pid(self):
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def alive(self):
        return self.pid() is not None

    def sql(self, statements, database=None, check=True):
        return mariadb_ctl.sql(self.dir, statements, database=database, check=check)

    def status(self, name):
        """A wsrep status variable (str), None when the node does not answer."""
        if not self.alive() or not os.path.exists(self.socket):
            return None
        rc, out, _ = mariadb_ctl.sql_status(self.dir, "SHOW STATUS LIKE '%s'" % name)
        if rc != 0 or "\t" not in out:
            return None
        return out.strip().split("\t", 1)[1]

    def log_tail(self, n=30):
        try:
            with open(mariadb_ctl.paths(self.dir)["log"], errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no error log)"

    def wait_synced(self, timeout):
        deadline = time.monotonic() + timeout * SCALE
        while time.monotonic() < deadline:
            if not self.alive():
                raise GaleraError("node %d exited; err.log tail:\n%s"
                                  % (self.index, self.log_tail()))
            if (self.status("wsrep_local_state_comment") == "Synced"
                    and self.status("wsrep_ready") == "ON"):
                return
            time.sleep(0.2)
        raise GaleraError("node %d not Synced within %.0f s; err.log tail:\n%s"
                          % (self.index, timeout * SCALE, self.log_tail()))

    def kill(self, timeout=15):
        """SIGKILL mariadbd and wait (bounded) until it is gone."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=timeout * SCALE)

    def stop(self, timeout=60):
        """SIGTERM mariadbd by its PID, SIGKILL when it does not exit in time."""
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout * SCALE)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            self.proc.wait(timeout=15 * SCALE)
        except ProcessLookupError:
            pass
        assert process_gone(pid)


class Cluster:
    """Three Galera nodes; conftest.MariaDB's shape for make_instance()."""

    USER = "petrel"

    def __init__(self, n=3):
        self.base = tempfile.mkdtemp(prefix="petrel-gal-", dir="/tmp")  # short: socket paths
        os.chmod(self.base, 0o755)  # the nodes' own account goes through it
        self.password = "pw-" + secrets.token_hex(6)
        self.nodes = []
        used = set()
        for i in range(1, n + 1):
            ports = []
            while len(ports) < 4:
                p = mariadb_ctl.free_port()
                if p not in used:
                    used.add(p)
                    ports.append(p)
            self.nodes.append(Node(self.base, i, ports))
        self._n = 0

    def start(self):
        """Bootstrap node 1, join the others one at a time, wait until the
        cluster has every node and each is Synced; create the petrel account."""
        gports = [n.gport for n in self.nodes]
        for n in self.nodes:
            n.write_cnf(gports)
            n.init()
        first = self.nodes[0]
        first.launch(bootstrap=True)
        first.wait_synced(60)
        for n in self.nodes[1:]:
            n.launch()
            n.wait_synced(120)
        self.wait_size(len(self.nodes))
        pw = self.password.replace("'", "''")
        first.sql(["CREATE USER IF NOT EXISTS '%s'@'%s' IDENTIFIED BY '%s'" % (self.USER, h, pw)
                   for h in ("127.0.0.1", "localhost")])

    def wait_size(self, size, timeout=60, nodes=None):
        deadline = time.monotonic() + timeout * SCALE
        nodes = [n for n in (nodes or self.nodes) if n.alive()]
        while time.monotonic() < deadline:
            if all(n.status("wsrep_cluster_size") == str(size) and
                   n.status("wsrep_local_state_comment") == "Synced" for n in nodes):
                return
            time.sleep(0.2)
        raise GaleraError("cluster size not %d within %.0f s: %s"
                          % (size, timeout * SCALE,
                             [(n.index, n.status("wsrep_cluster_size"),
                               n.status("wsrep_local_state_comment")) for n in nodes]))

    def restart(self, node, timeout=120):
        """Start a stopped or killed node again (it rejoins); wait until Synced."""
        node.launch()
        node.wait_synced(timeout)
        self.wait_size(len(self.nodes))

    def heal(self, timeout=120):
        """Start again every node that is not running (one a test killed
        and left); wait until the cluster has all of them, Synced."""
        for n in self.nodes:
            if not n.alive():
                self.restart(n, timeout)
        self.wait_size(len(self.nodes))

    def stop(self):
        errors = []
        for n in reversed(self.nodes):
            try:
                n.stop()
            except Exception as e:  # stop the others all the same
                errors.append("node %d: %s" % (n.index, e))
        if not os.environ.get("PETREL_KEEP_MARIADB"):
            shutil.rmtree(self.base, ignore_errors=True)
        if errors:
            raise GaleraError("; ".join(errors))

    # --- conftest.MariaDB's shape
    def live(self):
        for n in self.nodes:
            if n.alive():
                return n
        raise GaleraError("no Galera node runs")

    def root_sql(self, statements, database=None, check=True):
        return self.live().sql(statements, database=database, check=check)

    def sql(self, db, statements):
        return self.root_sql(statements, database=db)

    def ensure_running(self):
        self.live()

    def url(self, name, order=None):
        """mysql://petrel:PASS@127.0.0.1:P1,127.0.0.1:P2,.../NAME, the nodes
        in `order` (indexes from 1; default 1, 2, 3)."""
        order = order or [n.index for n in self.nodes]
        cred = "%s:%s" % (urllib.parse.quote(self.USER, safe=""),
                          urllib.parse.quote(self.password, safe=""))
        hosts = ",".join("127.0.0.1:%d" % self.nodes[i - 1].port for i in order)
        return "mysql://%s@%s/%s" % (cred, hosts, name)

    def new_database(self, prefix="petrel_g"):
        self._n += 1
        name = "%s%d_%s" % (prefix, self._n, secrets.token_hex(3))
        self.root_sql(["CREATE DATABASE `%s`" % name] +
                      ["GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'%s'" % (name, self.USER, h)
                       for h in ("127.0.0.1", "localhost")])
        return name, self.url(name)
