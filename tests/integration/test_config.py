"""Configuration: file lookup order, -o overrides, errors with line numbers."""

import os
import re

import pytest

from conftest import DOMAIN, assert_error, assert_ok, describe, run_petrel, table


def domains(cp):
    assert_ok(cp)
    return sorted(r[0] for r in table(cp.stdout))


@pytest.fixture
def two(new_instance):
    """Two SQLite instances: A hosts example.test, B hosts other.test."""
    a = new_instance("sqlite", "a", domain=DOMAIN)
    b = new_instance("sqlite", "b", domain="other.test")
    return a, b


def test_config_lookup_order(two, tmp_path):
    a, b = two
    bin_ = a.bin
    # ./petrel.conf in the cwd
    assert domains(run_petrel(bin_, ["domain", "list"], cwd=a.dir)) == [DOMAIN]
    assert domains(run_petrel(bin_, ["domain", "list"], cwd=b.dir)) == ["other.test"]
    # $PETREL_CONF beats ./petrel.conf
    assert domains(run_petrel(bin_, ["domain", "list"], cwd=a.dir,
                              env={"PETREL_CONF": b.conf})) == ["other.test"]
    # -c beats $PETREL_CONF
    assert domains(run_petrel(bin_, ["-c", a.conf, "domain", "list"], cwd=b.dir,
                              env={"PETREL_CONF": b.conf})) == [DOMAIN]
    # from an unrelated directory
    empty = tmp_path / "empty"
    empty.mkdir()
    assert domains(run_petrel(bin_, ["-c", b.conf, "domain", "list"], cwd=str(empty))) == ["other.test"]
    assert domains(run_petrel(bin_, ["domain", "list"], cwd=str(empty),
                              env={"PETREL_CONF": a.conf})) == [DOMAIN]


def test_config_missing_file(sqlite_instance, tmp_path):
    cp = run_petrel(sqlite_instance.bin, ["-c", str(tmp_path / "nope.conf"), "domain", "list"])
    assert_error(cp)
    cp = run_petrel(sqlite_instance.bin, ["domain", "list"], cwd=str(tmp_path),
                    env={"PETREL_CONF": str(tmp_path / "nope.conf")})
    assert_error(cp)


def test_option_override_database(two):
    a, b = two
    assert domains(a.run("domain", "list", check=False)) == [DOMAIN]
    assert domains(a.run("-o", "database=" + b.config()["database"], "domain", "list",
                         check=False)) == ["other.test"]
    # a write through the override goes to B, not A
    a.run("-o", "database=" + b.config()["database"], "domain", "add", "third.test")
    assert domains(b.run("domain", "list", check=False)) == ["other.test", "third.test"]
    assert domains(a.run("domain", "list", check=False)) == [DOMAIN]


def test_option_override_repeatable_last_wins(two):
    a, b = two
    cp = a.run("-o", "database=" + b.config()["database"], "-o", "database=" + a.config()["database"],
               "domain", "list", check=False)
    assert domains(cp) == [DOMAIN]


def test_option_empty_value(instance):
    instance.add_user("alice@" + DOMAIN, "pw", "--quota", "1000")
    cp = instance.run("-o", "query_quota=", "user", "list", check=False)
    assert_ok(cp)
    assert "alice@" + DOMAIN in cp.stdout
    assert_ok(instance.run("-o", "query_quota=", "check", check=False))


def test_option_unknown_key(sqlite_instance):
    assert_error(sqlite_instance.run("-o", "nosuchkey=1", "domain", "list", check=False), "nosuchkey")


def test_option_without_equals(sqlite_instance):
    assert_error(sqlite_instance.run("-o", "database", "domain", "list", check=False))


def test_option_missing_value(sqlite_instance):
    assert_error(run_petrel(sqlite_instance.bin, ["-c", sqlite_instance.conf, "-o"]))
    assert_error(run_petrel(sqlite_instance.bin, ["-c"]))


def _names_line(stderr, conf, n):
    """stderr names line n (ignoring digits that are part of the file's path)."""
    s = stderr.replace(conf, "CONF").replace(os.path.dirname(conf), "DIR")
    return re.search(r"(?<![\d.])%d(?!\d)" % n, s) is not None


def _write_bad(instance, tmp_path, lines_before, bad):
    text = open(instance.conf).read()
    conf = str(tmp_path / "bad.conf")
    with open(conf, "w") as f:
        f.write("".join(l + "\n" for l in lines_before))
        f.write(bad + "\n")
        f.write(text)
    return conf, len(lines_before) + 1


def test_config_unknown_key_line_number(sqlite_instance, tmp_path):
    conf, n = _write_bad(sqlite_instance, tmp_path, ["# petrel test", ""], "bogus_key = 1")
    assert n == 3
    cp = run_petrel(sqlite_instance.bin, ["-c", conf, "domain", "list"])
    line = assert_error(cp, "bogus_key")
    assert _names_line(line, conf, 3), "message should name line 3\n" + describe(cp)


def test_config_no_equals_line_number(sqlite_instance, tmp_path):
    conf, n = _write_bad(sqlite_instance, tmp_path, ["# a", "# b", "", "# c", ""],
                         "no equals sign")
    assert n == 6
    cp = run_petrel(sqlite_instance.bin, ["-c", conf, "domain", "list"])
    line = assert_error(cp)
    assert _names_line(line, conf, 6), "message should name line 6\n" + describe(cp)


def test_config_bad_value_line_number(sqlite_instance, tmp_path):
    conf, n = _write_bad(sqlite_instance, tmp_path, ["#", "#", "#", "#", "#", "#"],
                         "message_size_limit = lots")
    cp = run_petrel(sqlite_instance.bin, ["-c", conf, "domain", "list"])
    line = assert_error(cp)
    assert _names_line(line, conf, n), "message should name line %d\n" % n + describe(cp)


def test_config_comments_and_blank_lines(sqlite_instance, tmp_path):
    text = open(sqlite_instance.conf).read()
    conf = tmp_path / "ok.conf"
    conf.write_text("# leading comment\n\n   \n\t# indented comment\n" + text + "\n# trailing\n")
    assert domains(run_petrel(sqlite_instance.bin, ["-c", str(conf), "domain", "list"])) == [DOMAIN]


def test_config_duplicate_key_last_wins(two, tmp_path):
    """Postfix main.cf semantics: a later setting overrides an earlier one."""
    a, b = two
    text = open(a.conf).read()
    conf = tmp_path / "dup.conf"
    conf.write_text(text + "\ndatabase = %s\n" % b.config()["database"])
    assert domains(run_petrel(a.bin, ["-c", str(conf), "domain", "list"])) == ["other.test"]


def test_config_spacing_variants(two, tmp_path):
    """`key=value`, `key =value`, tabs and trailing blanks are all the same setting.
    (Leading white space is not: as in Postfix main.cf it continues the previous line.)"""
    a, b = two
    text = "".join(l + "\n" for l in open(a.conf).read().splitlines() if not l.startswith("database"))
    for line in ("database=%s", "database =%s", "database\t=\t%s", "database = %s   ", "database = %s\t"):
        conf = tmp_path / "sp.conf"
        conf.write_text(text + (line % b.config()["database"]) + "\n")
        assert domains(run_petrel(a.bin, ["-c", str(conf), "domain", "list"])) == ["other.test"], line


def test_config_continuation_line(sqlite_instance, tmp_path):
    """Postfix main.cf: a line that starts with whitespace continues the previous one."""
    inst = sqlite_instance
    text = "".join(l + "\n" for l in open(inst.conf).read().splitlines() if not l.startswith("query_domain"))
    conf = tmp_path / "cont.conf"
    conf.write_text(text + "query_domain = SELECT transport\n    FROM transport\n    WHERE domain = :domain\n")
    cp = run_petrel(inst.bin, ["-c", str(conf), "check"])
    assert_ok(cp)
    inst.add_user("alice@" + DOMAIN, "pw")
    cp = run_petrel(inst.bin, ["-c", str(conf), "user", "add", "bob@" + DOMAIN, "--password-stdin"],
                    input="pw\n")
    assert_ok(cp)


def test_init_relative_dir(petrel_bin, tmp_path):
    """init --dir with a relative path writes absolute paths, so -c works from anywhere."""
    assert_ok(run_petrel(petrel_bin, ["init", "--dir", "rel/inst", "--domain", DOMAIN], cwd=str(tmp_path)))
    conf = tmp_path / "rel" / "inst" / "petrel.conf"
    assert conf.is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert domains(run_petrel(petrel_bin, ["-c", str(conf), "domain", "list"], cwd=str(elsewhere))) == [DOMAIN]
    assert_ok(run_petrel(petrel_bin, ["-c", str(conf), "user", "add", "alice@" + DOMAIN,
                                      "--password-stdin"], input="pw\n", cwd=str(elsewhere)))
    assert (tmp_path / "rel" / "inst" / "mail" / DOMAIN / "alice" / "new").is_dir()
    assert_ok(run_petrel(petrel_bin, ["-c", str(conf), "check"], cwd=str(elsewhere)))


def test_option_before_c_still_overrides(two):
    a, b = two
    cp = run_petrel(a.bin, ["-o", "database=" + b.config()["database"], "-c", a.conf, "domain", "list"])
    assert domains(cp) == ["other.test"]


def test_config_crlf_line_endings(two, tmp_path):
    a, b = two
    conf = tmp_path / "crlf.conf"
    conf.write_bytes(open(b.conf, "rb").read().replace(b"\n", b"\r\n"))
    assert domains(run_petrel(a.bin, ["-c", str(conf), "domain", "list"])) == ["other.test"]


def test_config_imap_namespace_prefix_values(sqlite_instance, tmp_path):
    """imap_namespace_prefix takes "" (written "" or left empty) or INBOX.;
    anything else is one line naming the key and the line, exit 1."""
    for good in ('""', "", "INBOX."):
        conf, n = _write_bad(sqlite_instance, tmp_path, ["#"],
                             "imap_namespace_prefix = " + good)
        assert_ok(run_petrel(sqlite_instance.bin, ["-c", conf, "domain", "list"]))
    for bad in ("INBOX", "inbox.", "Mail/", "INBOX/"):
        conf, n = _write_bad(sqlite_instance, tmp_path, ["#", "#"],
                             "imap_namespace_prefix = " + bad)
        cp = run_petrel(sqlite_instance.bin, ["-c", conf, "domain", "list"])
        line = assert_error(cp, "imap_namespace_prefix")
        assert _names_line(line, conf, n), "message should name line %d\n" % n + describe(cp)
    cp = run_petrel(sqlite_instance.bin, ["-o", "imap_namespace_prefix=Mail.", "-c",
                                          sqlite_instance.conf, "domain", "list"])
    assert_error(cp, "imap_namespace_prefix")


def test_check_names_every_refused_line(sqlite_instance, tmp_path):
    """An upgrade: petrel check on a file with several keys it refuses lists
    every one (its line, what is wrong; a retired key with what to write
    instead: tests/unit/test_config.c) and exits 1, with the rest of the
    file applied; any other command, serve too, refuses the file in one line
    naming the first."""
    text = open(sqlite_instance.conf).read()
    conf = tmp_path / "old.conf"
    conf.write_text("# from an older release\nbogus_key = 1\n" + text +
                    "workers = many\n\nother_gone_key = x\n")
    base = 2 + text.count("\n")
    cp = run_petrel(sqlite_instance.bin, ["-c", str(conf), "check"])
    assert cp.returncode == 1, describe(cp)
    lines = [l for l in cp.stderr.splitlines() if l.strip()]
    assert lines == [
        "petrel: check: %s:2: unknown configuration key 'bogus_key'" % conf,
        "petrel: check: %s:%d: workers must be a non-negative integer" % (conf, base + 1),
        "petrel: check: %s:%d: unknown configuration key 'other_gone_key'" % (conf, base + 3),
    ], describe(cp)
    for args in (["serve"], ["domain", "list"]):
        cp = run_petrel(sqlite_instance.bin, ["-c", str(conf), "-o", "smtp_listen="] + args)
        line = assert_error(cp, "bogus_key")
        assert _names_line(line, str(conf), 2), describe(cp)


def test_check_passes_a_file_from_before_newer_keys(sqlite_instance, tmp_path):
    """A file written before the later listeners existed (no http_listen,
    https_listen, lmtp_listen, managesieve_listen): nothing to change, and
    those stay off (their default is empty, so no key changes meaning)."""
    later = ("http_listen", "https_listen", "lmtp_listen", "managesieve_listen")
    text = "".join(l + "\n" for l in open(sqlite_instance.conf).read().splitlines()
                   if l.split("=")[0].strip() not in later)
    conf = tmp_path / "older.conf"
    conf.write_text(text)
    cp = run_petrel(sqlite_instance.bin, ["-c", str(conf), "check"])
    assert cp.returncode == 0, describe(cp)
    for key in later:
        cp = run_petrel(sqlite_instance.bin, ["help", key])
        assert_ok(cp)
        assert "default: (empty)" in cp.stdout, cp.stdout
