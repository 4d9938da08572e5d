"""Install petrel's .deb for real, in a throw-away copy of the system.

    unshare --mount --propagation private python3 pkg_install_check.py DEB WORK

Run by test_packaging.py in a mount namespace of its own: /etc, /var and
/usr are overlaid with empty upper directories under WORK, so dpkg, the
maintainer scripts (adduser, `petrel init`) and the service write only
there, and everything vanishes with the namespace. Records what it sees
in WORK/facts.json; the test asserts on it. Every step is bounded."""

import grp
import imaplib
import json
import os
import pwd
import random
import signal
import smtplib
import socket
import stat
import subprocess
import sys
import time

DEB, WORK = sys.argv[1], sys.argv[2]
CONF = "/etc/petrel/petrel.conf"
UNIT = "/lib/systemd/system/petrel.service"
STEP = 120
facts = {"steps": []}


def run(*args, input=None, check=True):
    cp = subprocess.run(list(args), input=input, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True, timeout=STEP, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    facts["steps"].append({"cmd": " ".join(args), "rc": cp.returncode, "out": cp.stdout[-3000:]})
    if check and cp.returncode != 0:
        save()
        raise SystemExit("%s failed (%d):\n%s" % (" ".join(args), cp.returncode, cp.stdout))
    return cp


def save():
    with open(os.path.join(WORK, "facts.json"), "w") as f:
        json.dump(facts, f, indent=1)


def overlay(top):
    name = top.strip("/").replace("/", "_")
    upper, wd = os.path.join(WORK, "upper", name), os.path.join(WORK, "work", name)
    os.makedirs(upper)
    os.makedirs(wd)
    run("mount", "-t", "overlay", "overlay", "-o",
        "lowerdir=%s,upperdir=%s,workdir=%s" % (top, upper, wd), top)


def describe(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return {"mode": "%o" % stat.S_IMODE(st.st_mode), "dir": stat.S_ISDIR(st.st_mode),
            "owner": pwd.getpwuid(st.st_uid).pw_name, "group": grp.getgrgid(st.st_gid).gr_name}


def account(name):
    cp = subprocess.run(["getent", "passwd", name], stdout=subprocess.PIPE, text=True, timeout=10)
    if cp.returncode != 0:
        return None
    f = cp.stdout.strip().split(":")
    return {"uid": int(f[2]), "home": f[5], "shell": f[6]}


PATHS = ["/etc/petrel", CONF, CONF + ".example", "/etc/petrel/tls", "/etc/petrel/tls/key.pem",
         "/var/lib/petrel", "/var/lib/petrel/mail", "/var/lib/petrel/petrel.db",
         "/var/spool/petrel", "/var/spool/petrel/incoming", "/var/spool/petrel/state",
         "/var/spool/petrel/tmp", "/usr/bin/petrel", UNIT,
         "/etc/systemd/system/multi-user.target.wants/petrel.service"]


def snapshot():
    return {"paths": {p: describe(p) for p in PATHS},
            "accounts": {a: account(a) for a in ("petrel", "petrel-auth")}}


def low_port():
    ports = list(range(600, 1024))
    random.shuffle(ports)
    for p in ports:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise SystemExit("no free port below 1024")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def unit_caps():
    with open(UNIT) as f:
        for line in f:
            if line.startswith("CapabilityBoundingSet="):
                return [c.lower().replace("cap_", "") for c in line.split("=", 1)[1].split()]
    raise SystemExit("no CapabilityBoundingSet= in " + UNIT)


def greets(port, prefix):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(100).startswith(prefix)
    except OSError:
        return False


def serve_and_deliver():
    """The installed petrel as the unit runs it (root, the unit's bounding
    set, no new privileges): a message over SMTP on a port below 1024 lands
    in the maildir and IMAP shows it."""
    for attempt in range(3):  # another test may take a port meanwhile
        smtp, imap = low_port(), free_port()
        args = ["setpriv", "--bounding-set", ",".join(["-all"] + ["+" + c for c in unit_caps()]),
                "--inh-caps", "-all", "--no-new-privs",
                "/usr/bin/petrel", "-c", CONF, "-o", "smtp_listen=127.0.0.1:%d" % smtp,
                "-o", "imap_listen=127.0.0.1:%d" % imap, "-o", "workers=1"]
        for k in ("submission", "submissions", "imaps", "pop3", "pop3s", "http", "lmtp"):
            args += ["-o", k + "_listen="]
        p = subprocess.Popen(args + ["serve"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and p.poll() is None:
            if greets(smtp, b"220 ") and greets(imap, b"* OK"):
                break
            time.sleep(0.1)
        if p.poll() is None:
            break
        err = p.communicate(timeout=10)[1]
        if "Address already in use" not in err or attempt == 2:
            return {"greeted": False, "rc": p.returncode, "log": err[-4000:]}
    res = {}
    try:
        res["greeted"] = greets(smtp, b"220 ")
        with open("/proc/%d/status" % p.pid) as f:
            res["master_uids"] = [ln.split()[1:] for ln in f if ln.startswith("Uid:")][0]
        with smtplib.SMTP("127.0.0.1", smtp, timeout=20) as c:
            c.sendmail("sender@remote.test", ["alice@example.test"],
                       "Subject: packaged\r\n\r\ndelivered by the package\r\n")
        files = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not files:
            for root, _, names in os.walk("/var/lib/petrel/mail"):
                if os.path.basename(root) == "new":
                    files += [os.path.join(root, n) for n in names]
            time.sleep(0.1)
        res["delivered"] = [describe(f) for f in files]
        im = imaplib.IMAP4("127.0.0.1", imap, timeout=20)
        try:
            im.login("alice@example.test", "pw")
            typ, data = im.select("INBOX")
            res["imap_exists"] = int(data[0])
            im.logout()
        except imaplib.IMAP4.error as e:
            res["imap_error"] = str(e)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            _, err = p.communicate(timeout=5)
        res["rc"] = p.returncode
        res["log"] = err[-4000:]
    return res


def main():
    for top in ("/etc", "/var", "/usr"):
        overlay(top)
    facts["before"] = snapshot()
    run("dpkg", "-i", DEB)
    facts["installed"] = snapshot()
    with open(CONF) as f:
        facts["conf"] = f.read()
    run("dpkg", "-i", DEB)  # again: an upgrade to the same version
    facts["reinstalled"] = snapshot()
    facts["check"] = run("petrel", "-c", CONF, "check", check=False).returncode
    # the unit as installed, now that its ExecStart= binary exists
    facts["verify"] = run("systemd-analyze", "verify", UNIT, check=False).stdout
    facts["security"] = run("systemd-analyze", "security", "--offline=true", UNIT,
                            check=False).stdout
    run("petrel", "-c", CONF, "domain", "add", "example.test")
    run("petrel", "-c", CONF, "user", "add", "alice@example.test", "--password-stdin", input="pw\n")
    facts["serve"] = serve_and_deliver()
    save()
    facts["remove_out"] = run("dpkg", "--remove", "petrel").stdout
    facts["removed"] = snapshot()
    facts["purge_out"] = run("dpkg", "--purge", "petrel").stdout
    facts["purged"] = snapshot()
    save()


if __name__ == "__main__":
    main()
