"""The Debian package and `meson install`.

The package is built from a copy of the tree (the tracked and untracked,
not ignored, files: the worktree stays clean) with `dpkg-buildpackage -us
-uc -b`, checked with lintian (no E: line; every W: tag is one that
docs/install.md lists), then installed for real by pkg_install_check.py
in a mount namespace whose /etc, /var and /usr are overlays on empty
directories: dpkg, adduser and the maintainer scripts run as on a fresh
host, the installed petrel serves mail on a port below 1024 under the
unit's capability bounding set, and `dpkg --purge` runs; the host sees
none of it (no account, no file, no dpkg database entry).

It builds its own binary, so it runs once: in the plain build's pass of
scripts/test.sh, skipped in the sanitizer pass. About a minute on two
cores (the build is most of it)."""

import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
INNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pkg_install_check.py")
BUILD_TIMEOUT = 600


def sanitized(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


@pytest.fixture(scope="module", autouse=True)
def once(petrel_bin):
    if sanitized(petrel_bin):
        pytest.skip("built from the tree once, in the plain build's pass")
    if os.geteuid() != 0:
        pytest.skip("dpkg in a mount namespace needs root")
    for tool in ("dpkg-buildpackage", "dh", "lintian", "unshare", "setpriv", "git"):
        if shutil.which(tool) is None:
            pytest.fail("%s is missing: bash scripts/install-deps.sh --test" % tool)


def git_status():
    return subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=all"],
                          stdout=subprocess.PIPE, text=True, check=True, timeout=60).stdout


def copy_tree(dest):
    files = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "-c", "-o", "--exclude-standard"],
                           stdout=subprocess.PIPE, check=True, timeout=60).stdout.split(b"\0")
    for name in files:
        name = name.decode()
        src = os.path.join(REPO, name)
        if not name or not os.path.isfile(src):
            continue  # deleted but not yet committed
        os.makedirs(os.path.join(dest, os.path.dirname(name)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, name), follow_symlinks=False)


@pytest.fixture(scope="module")
def package():
    status = git_status()
    base = tempfile.mkdtemp(prefix="petrel-pkg-")
    try:
        src = os.path.join(base, "petrel")
        copy_tree(src)
        env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=2", LC_ALL="C.UTF-8")
        cp = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=BUILD_TIMEOUT)
        assert cp.returncode == 0, "dpkg-buildpackage failed:\n" + cp.stdout[-6000:]
        debs = [f for f in os.listdir(base) if re.fullmatch(r"petrel_[^_]+_[a-z0-9]+\.deb", f)]
        changes = [f for f in os.listdir(base) if f.endswith(".changes")]
        assert len(debs) == 1 and len(changes) == 1, os.listdir(base)
        yield {"dir": base, "deb": os.path.join(base, debs[0]),
               "changes": os.path.join(base, changes[0])}
    finally:
        shutil.rmtree(base, ignore_errors=True)
        assert git_status() == status, "the package build changed the worktree"


def documented_warnings():
    with open(os.path.join(REPO, "docs", "install.md")) as f:
        return set(re.findall(r"`W: ([a-z0-9-]+)`", f.read()))


def test_lintian(package):
    cp = subprocess.run(["lintian", "--allow-root", package["changes"]], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, timeout=300)
    lines = cp.stdout.splitlines()
    errors = [ln for ln in lines if ln.startswith("E:")]
    assert not errors, cp.stdout
    tags = {ln.split()[2] for ln in lines if ln.startswith("W:")}
    assert tags <= documented_warnings(), \
        "lintian warnings not listed in docs/install.md: %s\n%s" % (tags - documented_warnings(),
                                                                      cp.stdout)


def test_contents(package):
    cp = subprocess.run(["dpkg-deb", "-c", package["deb"]], stdout=subprocess.PIPE, text=True,
                        check=True, timeout=60)
    names = {ln.split()[5] for ln in cp.stdout.splitlines()}
    for path in ("./usr/bin/petrel", "./lib/systemd/system/petrel.service",
                 "./etc/petrel/petrel.conf.example", "./usr/share/doc/petrel/copyright",
                 "./usr/share/doc/petrel/install.md", "./usr/share/doc/petrel/README.md",
                 "./usr/share/man/man8/petrel.8.gz", "./usr/share/man/man5/petrel.conf.5.gz"):
        assert path in names, "%s not in the package\n%s" % (path, cp.stdout)
    assert not any(n.startswith("./var/") for n in names), "state is made by postinst"
    info = subprocess.run(["dpkg-deb", "-f", package["deb"], "Depends"], stdout=subprocess.PIPE,
                          text=True, check=True, timeout=60).stdout
    assert "adduser" in info and "libssl3" in info, info
    unit = subprocess.run(["dpkg-deb", "--fsys-tarfile", package["deb"]], stdout=subprocess.PIPE,
                          check=True, timeout=60).stdout
    assert b"ExecStart=/usr/bin/petrel -c /etc/petrel/petrel.conf serve" in unit


@pytest.fixture(scope="module")
def installed(package):
    """What pkg_install_check.py saw: install, reinstall, serve, purge."""
    work = os.path.join(package["dir"], "install")
    os.makedirs(work)
    cp = subprocess.run(["unshare", "--mount", "--propagation", "private", "/usr/bin/python3",
                         INNER, package["deb"], work], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, timeout=BUILD_TIMEOUT)
    facts = {}
    if os.path.exists(os.path.join(work, "facts.json")):
        with open(os.path.join(work, "facts.json")) as f:
            facts = json.load(f)
    assert cp.returncode == 0, "install check failed:\n%s\n%s" % (
        cp.stdout[-4000:], json.dumps(facts.get("steps", [])[-3:], indent=1))
    return facts


def path_is(snap, path, owner, group, mode):
    got = snap["paths"][path]
    assert got is not None, path + " is missing"
    assert (got["owner"], got["group"], got["mode"]) == (owner, group, mode), (path, got)


def test_postinst(installed):
    before = installed["before"]
    assert before["paths"]["/etc/petrel"] is None, "the namespace starts without petrel"
    for snap in (installed["installed"], installed["reinstalled"]):
        for name in ("petrel", "petrel-auth"):
            a = snap["accounts"][name]
            assert a is not None, "no account " + name
            assert a["uid"] < 1000 and a["shell"] == "/usr/sbin/nologin", (name, a)
        path_is(snap, "/etc/petrel", "root", "root", "755")
        path_is(snap, "/etc/petrel/petrel.conf", "root", "petrel", "640")
        path_is(snap, "/etc/petrel/tls/key.pem", "petrel", "petrel", "600")
        path_is(snap, "/var/lib/petrel", "root", "root", "755")
        path_is(snap, "/var/lib/petrel/mail", "petrel", "petrel", "750")
        path_is(snap, "/var/lib/petrel/petrel.db", "petrel-auth", "petrel-auth", "600")
        for d in ("", "/incoming", "/state", "/tmp"):
            path_is(snap, "/var/spool/petrel" + d, "petrel", "petrel", "750")
        assert snap["paths"]["/etc/systemd/system/multi-user.target.wants/petrel.service"], \
            "dh_installsystemd enables the unit"
    assert "queue_dir = /var/spool/petrel" in installed["conf"]
    assert installed["check"] == 0, installed["steps"]


def test_installed_unit(installed):
    assert "petrel.service" not in installed["verify"], installed["verify"]
    m = re.search(r"Overall exposure level for petrel\.service: ([0-9.]+) OK", installed["security"])
    assert m, installed["security"]
    from test_systemd import EXPOSURE_MAX
    assert float(m.group(1)) <= EXPOSURE_MAX, installed["security"]


def test_installed_serves(installed):
    serve = installed["serve"]
    assert serve["greeted"], serve["log"]
    uids = serve["master_uids"]
    assert "0" not in uids, "the master kept root: %r" % uids
    assert len(serve["delivered"]) == 1, serve
    d = serve["delivered"][0]
    assert (d["owner"], d["mode"]) == ("petrel", "600"), d
    assert serve.get("imap_exists") == 1, serve
    assert serve["rc"] == 0, serve["log"]


def test_purge(installed):
    removed, purged = installed["removed"]["paths"], installed["purged"]["paths"]
    # remove: the program and unit go, configuration and data stay
    assert removed["/usr/bin/petrel"] is None and removed["/lib/systemd/system/petrel.service"] is None
    assert removed["/etc/petrel/petrel.conf"] is not None
    # purge: configuration, certificate, queue and the enablement go
    for p in ("/etc/petrel", "/var/spool/petrel",
              "/etc/systemd/system/multi-user.target.wants/petrel.service"):
        assert purged[p] is None, (p, purged[p])
    # the mail and the directory stay, with the accounts that own them
    assert purged["/var/lib/petrel/mail"] is not None
    assert purged["/var/lib/petrel/petrel.db"] is not None
    assert installed["purged"]["accounts"]["petrel"] is not None
    assert "/var/lib/petrel are kept" in installed["purge_out"]


def test_host_untouched(installed):
    """The install happened in the namespace only."""
    assert not os.path.exists("/var/spool/petrel")
    cp = subprocess.run(["dpkg-query", "-W", "petrel"], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=60)
    assert cp.returncode != 0, "petrel is in the host's dpkg database"


def test_meson_install_prefix(package, tmp_path):
    """A custom prefix, sysconfdir and localstatedir: the files land
    there and the compiled-in defaults follow."""
    src = os.path.join(package["dir"], "petrel")
    bld, dest = tmp_path / "b", tmp_path / "dest"
    subprocess.run(["meson", "setup", str(bld), "--prefix=/opt/petrel", "--localstatedir=/srv/var",
                    "-Dsystemdsystemunitdir=/opt/petrel/lib/systemd/system"], cwd=src,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True, timeout=120)
    cp = subprocess.run(["meson", "compile", "-C", str(bld), "petrel:executable",
                         "petrel_conf_man"], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, timeout=BUILD_TIMEOUT)
    assert cp.returncode == 0, cp.stdout[-4000:]
    cp = subprocess.run(["meson", "install", "-C", str(bld), "--no-rebuild", "--destdir", str(dest)],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert cp.returncode == 0, cp.stdout
    root = str(dest) + "/opt/petrel"
    for p in ("bin/petrel", "etc/petrel/petrel.conf.example", "lib/systemd/system/petrel.service",
              "share/doc/petrel/README.md", "share/doc/petrel/install.md",
              "share/doc/petrel/examples/petrel.socket",
              "share/man/man8/petrel.8", "share/man/man5/petrel.conf.5"):
        assert os.path.exists(os.path.join(root, p)), p
    # the page names the paths of this build
    with open(os.path.join(root, "share/man/man5/petrel.conf.5")) as f:
        assert "/srv/var/lib/petrel/mail" in f.read()
    with open(os.path.join(root, "lib/systemd/system/petrel.service")) as f:
        unit = f.read()
    assert "ExecStart=/opt/petrel/bin/petrel -c /opt/petrel/etc/petrel/petrel.conf serve" in unit
    assert "ReadWritePaths=-/srv/var/lib/petrel -/srv/var/spool/petrel" in unit
    with open(os.path.join(root, "share/doc/petrel/examples/petrel.socket")) as f:
        assert "Documentation=file:/opt/petrel/share/doc/petrel/operations.md" in f.read()
    with open(os.path.join(root, "etc/petrel/petrel.conf.example")) as f:
        assert "mail_root = /srv/var/lib/petrel/mail" in f.read()
    # compiled-in defaults: `petrel check` with no file names them
    env = {k: v for k, v in os.environ.items() if k != "PETREL_CONF"}
    cp = subprocess.run([os.path.join(root, "bin/petrel"), "check"], cwd=str(tmp_path), env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert "/opt/petrel/etc/petrel/petrel.conf" in cp.stdout, cp.stdout
    assert "/srv/var/lib/petrel/mail" in cp.stdout, cp.stdout


def test_default_prefix_paths(build_dir):
    """The tree's own build (default prefix) keeps /etc/petrel and
    /var/lib/petrel."""
    with open(os.path.join(build_dir, "petrel.service")) as f:
        unit = f.read()
    assert "-c /etc/petrel/petrel.conf serve" in unit
    assert "ReadWritePaths=-/var/lib/petrel -/var/spool/petrel" in unit
