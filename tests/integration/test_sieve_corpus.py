"""The Sieve corpus (tests/sieve-corpus/*.sieve over its messages) run by
`petrel sieve test --script` and by Pigeonhole's sieve-test (Debian's
dovecot-sieve, unpacked by scripts/install-legacy-imap.sh; used only as
the reference here), with the same envelope: the normalized action
lists must be identical."""

import concurrent.futures
import glob
import os
import re
import subprocess

import pytest

import legacy_imap
from conftest import REPO, describe, run_petrel

CORPUS = os.path.join(REPO, "tests", "sieve-corpus")
SCRIPTS = sorted(glob.glob(os.path.join(CORPUS, "*.sieve")))
MESSAGES = sorted(glob.glob(os.path.join(CORPUS, "*.eml")))
ENV_FROM = "sender@example.org"
ENV_TO = "bob@example.net"
GLOBAL = os.path.join(CORPUS, "global")    # include :global (sieve_global)


def test_corpus_size():
    assert len(SCRIPTS) >= 50 and len(MESSAGES) >= 3


def parse_petrel(lines):
    acts = set()
    for line in lines:
        if line.startswith("  | "):     # the header as editheader left it
            continue
        words = line.split(" ")
        if words[0] == "store":
            m = re.match(r"store (.*?)( :create)?( \(implicit keep\))?( flags (.*))?$", line)
            flags = frozenset(f.lower() for f in (m.group(5) or "").split())
            acts.add(("store", m.group(1), flags))
        elif words[0] == "redirect":
            acts.add(("redirect", words[1]))
        elif words[0] in ("reject", "ereject"):
            acts.add(("reject",))
        elif words[0] == "discard":
            acts.add(("discard",))
        else:
            raise AssertionError("unexpected line %r" % line)
    if any(a[0] != "discard" for a in acts):
        acts.discard(("discard",))
    return acts


def petrel_actions(petrel_bin, script):
    """{message: actions} for every message, in one run."""
    cp = run_petrel(petrel_bin, ["-c", "/dev/null", "-o", "sieve_global=" + GLOBAL,
                                 "sieve", "test", "--script", script,
                                 "--from", ENV_FROM, "--to", ENV_TO] + MESSAGES)
    assert cp.returncode == 0, describe(cp)
    out, cur = {}, None
    for line in cp.stdout.splitlines():
        if line.startswith("== "):
            cur = out.setdefault(line[3:], [])
        else:
            cur.append(line)
    assert sorted(out) == MESSAGES, describe(cp)
    return {m: parse_petrel(lines) for m, lines in out.items()}


def pigeonhole_actions(work, script, msg):
    lib = legacy_imap._libpath()
    conf = os.path.join(work, "dovecot.conf")
    # Dovecot refuses to run mail access as root: nobody then
    uid, gid = (os.getuid(), os.getgid()) if os.getuid() != 0 else (65534, 65534)
    if not os.path.exists(conf):
        os.chmod(work, 0o777)
        run = os.path.join(work, "run")
        os.makedirs(run, exist_ok=True)
        os.makedirs(os.path.join(work, "mail"), exist_ok=True)
        with open(conf, "w") as f:
            f.write("base_dir = %s\nstate_dir = %s\n" % (run, run)
                    + "mail_location = maildir:%s/mail\n" % work
                    + "log_path = /dev/stderr\nssl = no\n"
                    + "default_login_user = nobody\ndefault_internal_user = nobody\n"
                    + "mail_uid = %d\nmail_gid = %d\n" % (uid, gid)
                    + "first_valid_uid = 1\nfirst_valid_gid = 1\n"
                    + "plugin {\n  sieve_extensions = +imap4flags +editheader\n"
                    # include :personal from the corpus, as petrel's --script
                    + "  sieve = file:%s;active=%s/.no-active.sieve\n" % (CORPUS, CORPUS)
                    + "  sieve_global = %s\n}\n" % GLOBAL)
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": lib, "HOME": work, "LC_ALL": "C",
           "USER": "petreltest"}
    cp = subprocess.run([legacy_imap._path("usr/bin/doveconf"), "-c", conf, "-e",
                         legacy_imap._path("usr/bin/sieve-test"), "-f", ENV_FROM, "-a", ENV_TO,
                         script, msg], env=env, cwd=work, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, timeout=30)
    assert cp.returncode == 0, "sieve-test failed:\n%s%s" % (cp.stdout, cp.stderr)
    acts = set()
    cur = None
    for line in cp.stdout.splitlines():
        m = re.match(r"\s*\* store message in folder: (.*)$", line)
        if m:
            cur = ["store", m.group(1), frozenset()]
            acts.add(tuple(cur))
            continue
        m = re.match(r"\s*\+ add IMAP flags: (.*)$", line)
        if m and cur is not None:
            acts.discard(tuple(cur))
            cur[2] = frozenset(f.lower() for f in m.group(1).split())
            acts.add(tuple(cur))
            continue
        if re.match(r"\s*\+ ", line):
            continue
        cur = None
        m = re.match(r"\s*\* redirect message to: <?([^>]*)>?$", line)
        if m:
            acts.add(("redirect", m.group(1)))
        elif re.match(r"\s*\* (e?reject|reject message)", line):
            acts.add(("reject",))
        elif re.match(r"\s*\* discard", line):
            acts.add(("discard",))
    if any(a[0] != "discard" for a in acts):
        acts.discard(("discard",))
    return acts


# Where Pigeonhole 0.5.19 disagrees with RFC 5228 and petrel follows the
# RFC: (script, message) -> why. The test asserts the difference is still
# exactly the RFC's answer on our side.
KNOWN = {
    # "?eeting*" cannot match "Buy now * great deals" (RFC 5228 2.7.1:
    # '?' is one character, then "eeting" must follow); Pigeonhole's
    # matcher answers true here, as it does for "?zzzz*" over the same
    # subject (a key starting with '?' and ending in '*').
    ("50-question-mark", "m2"): {("store", "INBOX", frozenset())},
    # the same over the subject "Dates"
    ("50-question-mark", "m4"): {("store", "INBOX", frozenset())},
}


@pytest.fixture(scope="module")
def results(petrel_bin, tmp_path_factory):
    """Every (script, message) pair through both, a few at a time (one
    process each; the ASan binary starts slowly)."""
    why = legacy_imap.available()
    if why is None and not os.access(legacy_imap._path("usr/bin/sieve-test"), os.X_OK):
        why = "sieve-test not found: run scripts/install-legacy-imap.sh"
    if why is not None:
        pytest.skip(why)
    work = str(tmp_path_factory.mktemp("pigeonhole"))
    pigeonhole_actions(work, SCRIPTS[0], MESSAGES[0])  # writes the configuration
    pairs = [(s, m) for s in SCRIPTS for m in MESSAGES]
    out = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        ours = {s: pool.submit(petrel_actions, petrel_bin, s) for s in SCRIPTS}
        theirs = {pair: pool.submit(pigeonhole_actions, work, *pair) for pair in pairs}
        for s, m in pairs:
            out[(s, m)] = (ours[s].result()[m], theirs[(s, m)].result())
    return out


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: os.path.basename(p)[:-6])
def test_same_actions_as_pigeonhole(results, script):
    for msg in MESSAGES:
        ours, theirs = results[(script, msg)]
        key = (os.path.basename(script)[:-6], os.path.basename(msg)[:-4])
        if key in KNOWN:
            assert ours == KNOWN[key]
            continue
        assert ours == theirs, "%s over %s" % key
