"""petrel help KEY and the manual pages: petrel.conf(5) is generated from the
key table at build time, petrel(8) lists every command."""

import os
import re
import subprocess

from conftest import REPO, assert_error, assert_ok, parse_conf, run_petrel


def keys(petrel_bin):
    cp = run_petrel(petrel_bin, ["help"])
    assert_ok(cp)
    return cp.stdout.split()


def render(path):
    """man's rendering of a page and its warnings (groff's -ww)."""
    env = dict(os.environ, MANWIDTH="80", LANG="C.UTF-8")
    cp = subprocess.run(["man", "-l", "--warnings", path], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, env=env, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert cp.stderr == "", "man warns about %s:\n%s" % (path, cp.stderr)
    return cp.stdout


def test_help_lists_every_key_init_writes(petrel_bin, sqlite_instance):
    listed = keys(petrel_bin)
    assert len(listed) == len(set(listed))
    # petrel init writes every key of the table: the same set
    assert set(listed) == set(parse_conf(sqlite_instance.conf)), \
        set(listed) ^ set(parse_conf(sqlite_instance.conf))
    assert "http_listen" in listed and "smtp_listen" in listed


def test_help_key(petrel_bin, sqlite_instance):
    cp = run_petrel(petrel_bin, ["help", "smtp_max_connections"])
    assert_ok(cp)
    lines = cp.stdout.splitlines()
    assert lines[0] == "smtp_max_connections"
    assert re.search(r"default: 2000$", cp.stdout, re.M), cp.stdout
    assert "from 0 to 1000000" in cp.stdout
    assert "SMTP sessions" in cp.stdout

    cp = run_petrel(petrel_bin, ["help", "log_target"])
    assert_ok(cp)
    assert "one of stderr|syslog" in cp.stdout and "default: stderr" in cp.stdout

    # listeners added later: off by default, on loopback in new instances
    for key, addr in (("http_listen", "127.0.0.1:8080"), ("https_listen", "127.0.0.1:8443"),
                      ("lmtp_listen", "127.0.0.1:2424"),
                      ("managesieve_listen", "127.0.0.1:4190")):
        cp = run_petrel(petrel_bin, ["help", key])
        assert_ok(cp)
        assert "default: (empty)" in cp.stdout, cp.stdout
        assert "petrel init writes: %s" % addr in cp.stdout, cp.stdout
        assert parse_conf(sqlite_instance.conf)[key] == addr


def test_help_unknown_key(petrel_bin):
    line = assert_error(run_petrel(petrel_bin, ["help", "imap_listn"]), "imap_listn")
    assert "imap_listen" in line
    assert_error(run_petrel(petrel_bin, ["help", "no_such_thing_at_all"]), "unknown")
    assert_error(run_petrel(petrel_bin, ["help", "a", "b"]), "unexpected")


def test_conf_man_page_has_every_key(petrel_bin, build_dir):
    page = os.path.join(build_dir, "petrel.conf.5")
    assert os.path.isfile(page), "the build makes petrel.conf.5"
    with open(page) as f:
        src = f.read()
    # the page the build made is what the binary prints now
    cp = run_petrel(petrel_bin, ["help", "--man"])
    assert_ok(cp)
    assert cp.stdout == src
    entries = re.findall(r"^\.TP\n\.B (\S+)$", src, re.M)
    assert entries == keys(petrel_bin)
    text = render(page)
    assert "petrel.conf - configuration file" in text
    for k in keys(petrel_bin):
        assert re.search(r"^ {7}%s( |$)" % re.escape(k), text, re.M), k
    # one key's entry as man shows it: help text, value syntax, default
    entry = text.split("\n       pop3_uidl_format\n", 1)[1].split("\n\n", 1)[0]
    assert "Default: filename." in entry and "filename|courier|dovecot|auto" in entry


def test_petrel_8_lists_every_command(petrel_bin):
    cp = run_petrel(petrel_bin, ["--help"])
    assert_ok(cp)
    commands = re.findall(r"^  petrel (\S+)", cp.stdout, re.M)
    assert "help" in commands and "serve" in commands
    text = render(os.path.join(REPO, "man", "petrel.8"))
    for c in commands:
        assert re.search(r"^ {7}%s\b" % re.escape(c), text, re.M), "petrel(8) lacks %s" % c
