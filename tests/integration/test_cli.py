"""The admin CLI: domains, users, aliases, auth, hash, maildirmake, errors.

Every test that touches the directory runs against both backends (SQLite and
MariaDB) through the `instance` fixture.
"""

import json
import os
import sqlite3

import pytest

from conftest import DOMAIN, assert_error, assert_ok, describe, pycrypt, run_petrel, table

ALICE = "alice@" + DOMAIN
DES_HASH = "jnk.l3QByZvdk"   # Exim howto: ENCRYPT('lrepsak')
DES_PASSWORD = "lrepsak"


def maildir_ok(path):
    return all(os.path.isdir(os.path.join(path, s)) for s in ("cur", "new", "tmp"))


def user_fields(line):
    f = line.split("\t")
    assert len(f) == 9, "user line must have 9 tab-separated fields: %r" % line
    keys = ("address", "id", "name", "uid", "gid", "home", "maildir", "quota", "login")
    return dict(zip(keys, f))


def snapshot(path):
    """All paths under path (to show nothing was created)."""
    out = set()
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(root, n), path))
    return out


# ---------------------------------------------------------------- domains


def test_domain_add_list_del(instance):
    instance.run("domain", "add", "other.test")
    instance.run("domain", "add", "relay.test", "--transport", "smtp:[mx.relay.test]:25")
    rows = table(instance.run("domain", "list").stdout)
    assert [DOMAIN, "virtual:"] in rows
    assert ["other.test", "virtual:"] in rows
    assert ["relay.test", "smtp:[mx.relay.test]:25"] in rows
    assert all(len(r) == 2 for r in rows), rows
    assert instance.sql("SELECT transport FROM transport WHERE domain = 'relay.test'") == \
        [("smtp:[mx.relay.test]:25",)]
    js = instance.json("domain", "list", "--json")
    assert isinstance(js, list)
    assert {"domain": "relay.test", "transport": "smtp:[mx.relay.test]:25"} in js, js
    assert {"domain": DOMAIN, "transport": "virtual:"} in js, js
    assert len(js) == len(rows)
    instance.run("domain", "del", "relay.test")
    rows = table(instance.run("domain", "list").stdout)
    assert "relay.test" not in [r[0] for r in rows]
    assert instance.sql("SELECT domain FROM transport WHERE domain = 'relay.test'") == []


def test_domain_add_duplicate(instance):
    cp = instance.run("domain", "add", DOMAIN, check=False)
    assert_error(cp)
    assert instance.sql("SELECT COUNT(*) FROM transport WHERE domain = '%s'" % DOMAIN) == [("1",)]


def test_domain_del_with_users_refused(instance):
    instance.add_user(ALICE, "pw")
    cp = instance.run("domain", "del", DOMAIN, check=False)
    assert_error(cp)
    assert DOMAIN in [r[0] for r in table(instance.run("domain", "list").stdout)]
    assert instance.user_row(ALICE) is not None


def test_domain_del_missing(instance):
    assert_error(instance.run("domain", "del", "nothosted.test", check=False))


def test_domain_error_transport(instance):
    instance.run("domain", "add", "bounce.test", "--transport", "error:no such domain")
    assert ["bounce.test", "error:no such domain"] in table(instance.run("domain", "list").stdout)


# ---------------------------------------------------------------- users


def test_user_add_full(instance):
    cp = instance.run("user", "add", ALICE, "--password-stdin", "--name", "Alice Liddell",
                      "--quota", "1048576", input="wonderland\n")
    row = instance.user_row(ALICE)
    assert row is not None
    assert row["maildir"] == DOMAIN + "/alice/", row
    assert row["crypt"].startswith("$y$"), row
    assert row["clear"] == "", row
    assert row["name"] == "Alice Liddell"
    assert row["domain"] == DOMAIN, row
    assert (row["imapok"], row["bool1"], row["bool2"]) == ("1", "1", "1"), row
    assert instance.sql("SELECT quota FROM users WHERE address = '%s'" % ALICE) == [("1048576",)]
    md = os.path.join(instance.mail_root, DOMAIN, "alice")
    assert maildir_ok(md), "maildir not created at %s" % md
    assert instance.auth(ALICE, "wonderland")
    assert not instance.auth(ALICE, "Wonderland")


def test_user_show_list_roundtrip(instance):
    instance.run("user", "add", ALICE, "--password-stdin", "--name", "Alice Liddell",
                 "--quota", "5000000", input="pw\n")
    row = instance.user_row(ALICE)
    line = instance.run("user", "show", ALICE).stdout.strip("\n")
    assert "\n" not in line, "show prints one record"
    f = user_fields(line)
    assert f == {
        "address": ALICE, "id": row["id"], "name": "Alice Liddell", "uid": row["uid"],
        "gid": row["gid"], "home": row["home"], "maildir": DOMAIN + "/alice/",
        "quota": "5000000", "login": "yes"}, (f, row)
    listed = [user_fields(l) for l in instance.run("user", "list").stdout.splitlines() if l]
    assert f in listed, listed
    js = instance.json("user", "show", ALICE, "--json")
    assert js == {"address": ALICE, "id": row["id"], "name": "Alice Liddell",
                  "uid": int(row["uid"]), "gid": int(row["gid"]), "home": row["home"],
                  "maildir": DOMAIN + "/alice/", "quota": 5000000, "login": True}, js
    jl = instance.json("user", "list", "--json")
    assert isinstance(jl, list) and js in jl, jl
    # JSON types
    assert isinstance(js["uid"], int) and isinstance(js["gid"], int)
    assert isinstance(js["quota"], int) and isinstance(js["login"], bool)


def test_user_show_login_flag(instance):
    instance.insert_user("carol@" + DOMAIN, "carol@" + DOMAIN, DES_HASH, name="Carol", imapok=0)
    f = user_fields(instance.run("user", "show", "carol@" + DOMAIN).stdout.strip("\n"))
    assert f["login"] == "no"
    assert f["quota"] == "0"
    assert f["maildir"] == DOMAIN + "/carol/"
    js = instance.json("user", "show", "carol@" + DOMAIN, "--json")
    assert js["login"] is False and js["quota"] == 0


def test_user_add_without_password(instance):
    cp = instance.run("user", "add", "nopw@" + DOMAIN)
    assert cp.stderr.strip(), "a user without a password should draw a warning on stderr"
    row = instance.user_row("nopw@" + DOMAIN)
    assert row is not None and row["crypt"] == "", row
    assert not instance.auth("nopw@" + DOMAIN, "")
    assert not instance.auth("nopw@" + DOMAIN, "x")


def test_user_add_import_crypt(instance):
    h = "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/"
    crypt = pycrypt()
    if crypt is not None:
        h = crypt.crypt("imported", "$6$saltsalt$")
    instance.run("user", "add", "imp@" + DOMAIN, "--crypt", h)
    assert instance.user_row("imp@" + DOMAIN)["crypt"] == h
    if crypt is not None:
        assert instance.auth("imp@" + DOMAIN, "imported")
        assert not instance.auth("imp@" + DOMAIN, "imported2")


def test_user_add_import_des_crypt(instance):
    instance.run("user", "add", "kasper@" + DOMAIN, "--crypt", DES_HASH)
    assert instance.user_row("kasper@" + DOMAIN)["crypt"] == DES_HASH
    assert instance.auth("kasper@" + DOMAIN, DES_PASSWORD)


def test_user_del(instance):
    instance.add_user(ALICE, "pw")
    instance.run("user", "del", ALICE)
    assert instance.user_row(ALICE) is None
    assert ALICE not in instance.run("user", "list").stdout
    assert not instance.auth(ALICE, "pw")
    assert_error(instance.run("user", "show", ALICE, check=False))
    assert_error(instance.run("user", "del", ALICE, check=False))


def test_user_passwd(instance):
    instance.add_user(ALICE, "old-password")
    before = instance.user_row(ALICE)["crypt"]
    instance.run("user", "passwd", ALICE, input="new-password\n")
    after = instance.user_row(ALICE)["crypt"]
    assert after != before and after.startswith("$y$")
    assert instance.auth(ALICE, "new-password")
    assert not instance.auth(ALICE, "old-password")
    assert instance.user_row(ALICE)["clear"] == ""


def test_user_passwd_unknown_user(instance):
    assert_error(instance.run("user", "passwd", "ghost@" + DOMAIN, input="x\n", check=False))


def test_user_list_domain_filter(instance):
    instance.run("domain", "add", "other.test")
    instance.add_user(ALICE, "pw")
    instance.add_user("bob@other.test", "pw")
    mine = [user_fields(l)["address"] for l in instance.run("user", "list", DOMAIN).stdout.splitlines() if l]
    other = [user_fields(l)["address"] for l in instance.run("user", "list", "other.test").stdout.splitlines() if l]
    everyone = [user_fields(l)["address"] for l in instance.run("user", "list").stdout.splitlines() if l]
    assert ALICE in mine and "bob@other.test" not in mine, mine
    assert other == ["bob@other.test"], other
    assert ALICE in everyone and "bob@other.test" in everyone
    js = instance.json("user", "list", "other.test", "--json")
    assert [u["address"] for u in js] == ["bob@other.test"]
    # a domain that differs only where LIKE would match must not match
    cp = instance.run("user", "list", "other_test", check=False)
    assert cp.returncode in (0, 1)
    assert "bob@other.test" not in cp.stdout


def test_user_add_duplicate(instance):
    instance.add_user(ALICE, "pw1")
    crypt = instance.user_row(ALICE)["crypt"]
    assert_error(instance.run("user", "add", ALICE, "--password-stdin", input="pw2\n", check=False))
    assert instance.sql("SELECT COUNT(*) FROM users WHERE address = '%s'" % ALICE) == [("1",)]
    assert instance.user_row(ALICE)["crypt"] == crypt
    assert instance.auth(ALICE, "pw1")


def test_user_add_duplicate_other_case(instance):
    """Lookups are case-insensitive, so ALICE@EXAMPLE.TEST is the same user."""
    instance.add_user(ALICE, "pw1")
    assert_error(instance.run("user", "add", "Alice@Example.Test", "--password-stdin",
                              input="pw2\n", check=False))
    assert instance.sql("SELECT COUNT(*) FROM users") == [("1",)]


def test_user_add_unhosted_domain(instance):
    before = snapshot(instance.mail_root)
    assert_error(instance.run("user", "add", "x@nothosted.test", "--password-stdin",
                              input="pw\n", check=False))
    assert instance.sql("SELECT COUNT(*) FROM users") == [("0",)]
    assert snapshot(instance.mail_root) == before


BAD_ADDRESSES = ["noat", "a@", "@b", "@" + DOMAIN, "a b@" + DOMAIN, "a@@" + DOMAIN,
                 "a" * 287 + "@" + DOMAIN, "", ".a@" + DOMAIN, "a..b@" + DOMAIN]


@pytest.mark.parametrize("address", BAD_ADDRESSES,
                         ids=["noat", "a@", "@b", "@domain", "space", "double-at", "300-chars",
                              "empty", "leading-dot", "double-dot"])
def test_user_add_malformed_address(instance, address):
    assert len(BAD_ADDRESSES[6]) == 300
    before = snapshot(instance.mail_root)
    cp = instance.run("user", "add", address, "--password-stdin", input="pw\n", check=False)
    assert_error(cp)
    assert instance.sql("SELECT COUNT(*) FROM users") == [("0",)]
    assert snapshot(instance.mail_root) == before


@pytest.mark.parametrize("quota", ["abc", "12x", "-1", "1.5", ""])
def test_user_add_bad_quota(instance, quota):
    before = snapshot(instance.mail_root)
    cp = instance.run("user", "add", ALICE, "--password-stdin", "--quota", quota,
                      input="pw\n", check=False)
    assert_error(cp)
    assert instance.user_row(ALICE) is None
    assert snapshot(instance.mail_root) == before


def test_user_add_missing_argument(instance):
    assert_error(instance.run("user", "add", check=False))
    assert_error(instance.run("user", "add", ALICE, "--quota", check=False))
    assert_error(instance.run("user", "add", ALICE, "--name", check=False))
    assert instance.user_row(ALICE) is None


# ---------------------------------------------------------------- auth


def test_auth_des_howto_example(instance):
    instance.insert_user("kasperl@" + DOMAIN, "kasperl@" + DOMAIN, DES_HASH, name="Kasper")
    assert instance.auth("kasperl@" + DOMAIN, "lrepsak")
    assert instance.auth("kasperl@" + DOMAIN, "lrepsak", newline=False)
    assert not instance.auth("kasperl@" + DOMAIN, "lrepsaK")
    assert not instance.auth("kasperl@" + DOMAIN, "")
    assert not instance.auth("kasperl@" + DOMAIN, "lrepsak ")
    assert not instance.auth("kasperl@" + DOMAIN, "lrepsa")
    # DES only uses 8 characters; that is crypt(3)'s business, but a wrong
    # prefix must fail
    assert not instance.auth("kasperl@" + DOMAIN, "xrepsak")
    assert not instance.auth("nobody@" + DOMAIN, "lrepsak")


@pytest.mark.parametrize("flag", ["imapok", "bool1", "bool2"])
def test_auth_login_flags(instance, flag):
    addr = "kasperl@" + DOMAIN
    instance.insert_user(addr, addr, DES_HASH)
    assert instance.auth(addr, DES_PASSWORD)
    instance.sql("UPDATE users SET %s = 0 WHERE address = '%s'" % (flag, addr))
    assert not instance.auth(addr, DES_PASSWORD)
    instance.sql("UPDATE users SET %s = 1 WHERE address = '%s'" % (flag, addr))
    assert instance.auth(addr, DES_PASSWORD)


def test_auth_by_id_and_by_address(instance):
    instance.insert_user("kasperl", "kasper.l@" + DOMAIN, DES_HASH)
    assert instance.auth("kasperl", DES_PASSWORD)
    assert instance.auth("kasper.l@" + DOMAIN, DES_PASSWORD)
    assert not instance.auth("kasperl", "wrong")
    assert not instance.auth("kasper.l@" + DOMAIN, "wrong")
    assert not instance.auth("kasper", DES_PASSWORD)


def _scheme_hashes(instance):
    out = {}
    for scheme, prefix in (("yescrypt", "$y$"), ("sha512", "$6$"), ("bcrypt", "$2b$")):
        h = instance.run("hash", "--scheme", scheme, input="pw-" + scheme + "\n").stdout.strip()
        assert h.startswith(prefix), (scheme, h)
        out[scheme] = (h, "pw-" + scheme)
    crypt = pycrypt()
    if crypt is not None:
        out["md5"] = (crypt.crypt("pw-md5", "$1$abcdefgh$"), "pw-md5")
        out["sha256"] = (crypt.crypt("pw-sha256", "$5$abcdefghijklmnop$"), "pw-sha256")
        out["des"] = (crypt.crypt("pw-des", "ab"), "pw-des")
        out["sha512-rounds"] = (crypt.crypt("pw-rounds", "$6$rounds=5000$abc$"), "pw-rounds")
        assert out["md5"][0].startswith("$1$") and out["sha256"][0].startswith("$5$")
    return out


def test_auth_every_scheme(instance):
    hashes = _scheme_hashes(instance)
    for i, (scheme, (h, pw)) in enumerate(sorted(hashes.items())):
        addr = "u%d@%s" % (i, DOMAIN)
        instance.insert_user(addr, addr, h)
        assert instance.auth(addr, pw), "scheme %s hash %s" % (scheme, h)
        assert not instance.auth(addr, pw + "x"), "scheme %s" % scheme
        assert not instance.auth(addr, ""), "scheme %s" % scheme


def test_auth_empty_or_garbage_crypt_never_logs_in(instance):
    for i, h in enumerate(["", "*", "!", "!" + DES_HASH, "x", "$y$", "$6$", "$2b$"]):
        addr = "g%d@%s" % (i, DOMAIN)
        instance.insert_user(addr, addr, h)
        for pw in ("", "x", "*", "!", h):
            assert not instance.auth(addr, pw), (h, pw)


def test_auth_missing_argument(instance):
    assert_error(instance.run("user", "auth", input="x\n", check=False))


# ---------------------------------------------------------------- hash


def test_hash_default_yescrypt(sqlite_instance):
    cp = sqlite_instance.run("hash", input="secret\n")
    h = cp.stdout.strip()
    assert cp.stdout.count("\n") == 1 and h.startswith("$y$"), describe(cp)
    crypt = pycrypt()
    if crypt is not None:
        assert crypt.crypt("secret", h) == h
        assert crypt.crypt("secret\n", h) != h
    # a new salt every time
    assert sqlite_instance.run("hash", input="secret\n").stdout.strip() != h


@pytest.mark.parametrize("scheme,prefix", [("yescrypt", "$y$"), ("sha512", "$6$"), ("bcrypt", "$2b$")])
def test_hash_schemes(sqlite_instance, scheme, prefix):
    h = sqlite_instance.run("hash", "--scheme", scheme, input="secret\n").stdout.strip()
    assert h.startswith(prefix), h
    crypt = pycrypt()
    if crypt is not None:
        assert crypt.crypt("secret", h) == h


def test_hash_unknown_scheme(sqlite_instance):
    cp = sqlite_instance.run("hash", "--scheme", "rot13", input="secret\n", check=False)
    assert_error(cp)
    assert cp.stdout == ""


def test_hash_needs_no_database(petrel_bin, tmp_path):
    conf = tmp_path / "p.conf"
    conf.write_text("database = sqlite:%s/nodir/x.db\n" % tmp_path)
    cp = run_petrel(petrel_bin, ["-c", str(conf), "hash"], input="x\n", cwd=str(tmp_path))
    assert_ok(cp)
    assert cp.stdout.startswith("$y$")


# ---------------------------------------------------------------- aliases


def test_alias_add_list_del(instance):
    instance.add_user(ALICE, "pw")
    instance.run("alias", "add", "info@" + DOMAIN, ALICE)
    rows = table(instance.run("alias", "list").stdout)
    assert ["info@" + DOMAIN, ALICE] in rows
    assert all(len(r) == 2 for r in rows), rows
    assert instance.sql("SELECT goto FROM virtual WHERE address = 'info@%s'" % DOMAIN) == [(ALICE,)]
    js = instance.json("alias", "list", "--json")
    assert {"address": "info@" + DOMAIN, "goto": [ALICE]} in js, js
    instance.run("alias", "del", "info@" + DOMAIN)
    assert "info@" + DOMAIN not in instance.run("alias", "list").stdout
    assert instance.sql("SELECT goto FROM virtual WHERE address = 'info@%s'" % DOMAIN) == []


def test_alias_several_targets_and_merge(instance):
    src = "team@" + DOMAIN
    instance.run("alias", "add", src, "a@x.test, b@y.test")
    goto = instance.sql("SELECT goto FROM virtual WHERE address = '%s'" % src)
    assert goto == [("a@x.test,b@y.test",)], goto
    js = instance.json("alias", "list", "--json")
    assert {"address": src, "goto": ["a@x.test", "b@y.test"]} in js, js
    # merge: one new, one already there
    instance.run("alias", "add", src, "b@y.test,c@z.test")
    goto = instance.sql("SELECT goto FROM virtual WHERE address = '%s'" % src)
    assert len(goto) == 1, "one row per alias address: %r" % goto
    targets = goto[0][0].split(",")
    assert sorted(targets) == ["a@x.test", "b@y.test", "c@z.test"], targets
    assert targets[:2] == ["a@x.test", "b@y.test"], "existing targets keep their order: %r" % targets
    # adding only existing targets changes nothing
    instance.run("alias", "add", src, "a@x.test")
    assert sorted(instance.sql("SELECT goto FROM virtual WHERE address = '%s'" % src)[0][0].split(",")) == \
        ["a@x.test", "b@y.test", "c@z.test"]
    rows = table(instance.run("alias", "list").stdout)
    assert [r for r in rows if r[0] == src] == [[src, goto[0][0]]]


def test_alias_catch_all(instance):
    instance.add_user(ALICE, "pw")
    instance.run("alias", "add", "@" + DOMAIN, ALICE)
    assert ["@" + DOMAIN, ALICE] in table(instance.run("alias", "list").stdout)
    assert ["@" + DOMAIN, ALICE] in table(instance.run("alias", "list", DOMAIN).stdout)
    instance.run("alias", "del", "@" + DOMAIN)
    assert instance.sql("SELECT COUNT(*) FROM virtual WHERE address = '@%s'" % DOMAIN) == [("0",)]


def test_alias_list_domain_filter(instance):
    instance.run("domain", "add", "other.test")
    instance.run("alias", "add", "info@" + DOMAIN, ALICE)
    instance.run("alias", "add", "info@other.test", "bob@other.test")
    mine = table(instance.run("alias", "list", DOMAIN).stdout)
    other = table(instance.run("alias", "list", "other.test").stdout)
    assert ["info@" + DOMAIN, ALICE] in mine and not any(r[0].endswith("@other.test") for r in mine)
    assert other == [["info@other.test", "bob@other.test"]], other
    js = instance.json("alias", "list", "other.test", "--json")
    assert js == [{"address": "info@other.test", "goto": ["bob@other.test"]}], js


def test_alias_unhosted_domain(instance):
    assert_error(instance.run("alias", "add", "x@nothosted.test", ALICE, check=False))
    assert instance.sql("SELECT COUNT(*) FROM virtual WHERE address = 'x@nothosted.test'") == [("0",)]


def test_alias_del_missing(instance):
    assert_error(instance.run("alias", "del", "ghost@" + DOMAIN, check=False))


def test_alias_bad_arguments(instance):
    n = instance.sql("SELECT COUNT(*) FROM virtual")
    assert_error(instance.run("alias", "add", "info@" + DOMAIN, check=False))
    assert_error(instance.run("alias", "add", check=False))
    assert_error(instance.run("alias", "add", "no-at-sign", ALICE, check=False))
    assert_error(instance.run("alias", "add", "info@" + DOMAIN, "bad target@x.test", check=False))
    assert instance.sql("SELECT COUNT(*) FROM virtual") == n


# ---------------------------------------------------------------- maildirmake


def test_maildirmake(sqlite_instance, tmp_path):
    md = tmp_path / "Maildir"
    sqlite_instance.run("maildirmake", str(md))
    assert maildir_ok(str(md))
    sqlite_instance.run("maildirmake", str(md), "--folder", "Sent")
    assert maildir_ok(str(md / ".Sent"))
    assert (md / ".Sent" / "maildirfolder").is_file()
    sqlite_instance.run("maildirmake", str(md), "--folder", "Archive.2024")
    assert maildir_ok(str(md / ".Archive.2024"))
    assert (md / ".Archive.2024" / "maildirfolder").is_file()


@pytest.mark.parametrize("name", ["../x", "a/b", ".x", "", "..", "x/", "/etc"])
def test_maildirmake_bad_folder(sqlite_instance, tmp_path, name):
    md = tmp_path / "Maildir"
    sqlite_instance.run("maildirmake", str(md))
    before = snapshot(str(tmp_path))
    cp = sqlite_instance.run("maildirmake", str(md), "--folder", name, check=False)
    assert_error(cp)
    assert snapshot(str(tmp_path)) == before


def test_maildirmake_missing_argument(sqlite_instance):
    assert_error(sqlite_instance.run("maildirmake", check=False))


# ---------------------------------------------------------------- generic errors


def test_unknown_command(sqlite_instance):
    assert_error(sqlite_instance.run("frobnicate", check=False))
    assert_error(sqlite_instance.run("user", "frobnicate", check=False))
    assert_error(sqlite_instance.run("domain", "frobnicate", check=False))
    assert_error(sqlite_instance.run("alias", check=False))


def test_no_command(sqlite_instance):
    cp = sqlite_instance.run(check=False)
    assert cp.returncode != 0, describe(cp)


def test_missing_arguments(instance):
    for args in (("domain", "add"), ("domain", "del"), ("user", "del"), ("user", "show"),
                 ("user", "passwd"), ("alias", "del"), ("domain", "add", DOMAIN + "x", "--transport")):
        assert_error(instance.run(*args, check=False, input=""))


def test_unreachable_mariadb(sqlite_instance):
    cp = run_petrel(sqlite_instance.bin, ["-c", sqlite_instance.conf, "-o",
                                          "database=mysql://x:y@127.0.0.1:1/nodb", "domain", "list"])
    assert_error(cp)
    cp = run_petrel(sqlite_instance.bin, ["-c", sqlite_instance.conf, "-o",
                                          "database=mysql://x:y@127.0.0.1:1/nodb",
                                          "user", "add", ALICE, "--password-stdin"], input="pw\n")
    assert_error(cp)
    assert not os.path.exists(os.path.join(sqlite_instance.mail_root, DOMAIN, "alice"))


def test_unreachable_sqlite(sqlite_instance, tmp_path):
    bad = "database=sqlite:%s/no/such/dir/petrel.db" % tmp_path
    cp = run_petrel(sqlite_instance.bin, ["-c", sqlite_instance.conf, "-o", bad, "domain", "list"])
    assert_error(cp)
    cp = run_petrel(sqlite_instance.bin, ["-c", sqlite_instance.conf, "-o", bad,
                                          "user", "add", ALICE, "--password-stdin"], input="pw\n")
    assert_error(cp)
    assert not os.path.exists(os.path.join(tmp_path, "no"))
    assert not os.path.exists(os.path.join(sqlite_instance.mail_root, DOMAIN, "alice"))


def test_sqlite_database_without_schema(sqlite_instance, tmp_path):
    """An empty SQLite file is not a directory: a clear error, not a crash."""
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    cp = run_petrel(sqlite_instance.bin, ["-c", sqlite_instance.conf, "-o",
                                          "database=sqlite:%s" % empty, "domain", "list"])
    assert_error(cp)


# ---------------------------------------------------------------- more edge cases


def test_domain_case_insensitive(instance):
    instance.run("domain", "add", "Other.Test")
    rows = table(instance.run("domain", "list").stdout)
    assert ["other.test", "virtual:"] in rows, "domains are stored lower-case: %r" % rows
    assert_error(instance.run("domain", "add", "OTHER.test", check=False))
    instance.add_user("Bob@OTHER.TEST", "pw")
    assert instance.user_row("Bob@other.test") is not None or instance.user_row("bob@other.test") is not None
    assert instance.auth("Bob@other.test", "pw")


@pytest.mark.parametrize("name", ["bad domain", "-x.test", "x-.test", "a..b", "", "%", ".test",
                                  "test.", "a" * 64 + ".test", "x@y.test", "x/y.test"])
def test_domain_add_invalid(instance, name):
    n = instance.sql("SELECT COUNT(*) FROM transport")
    assert_error(instance.run("domain", "add", name, check=False))
    assert instance.sql("SELECT COUNT(*) FROM transport") == n


def test_user_passwd_empty_password_refused(instance):
    instance.add_user(ALICE, "old")
    crypt = instance.user_row(ALICE)["crypt"]
    assert_error(instance.run("user", "passwd", ALICE, input="", check=False))
    assert_error(instance.run("user", "passwd", ALICE, input="\n", check=False))
    assert instance.user_row(ALICE)["crypt"] == crypt
    assert instance.auth(ALICE, "old")


def test_user_add_empty_password_stdin_refused(instance):
    before = snapshot(instance.mail_root)
    assert_error(instance.run("user", "add", ALICE, "--password-stdin", input="\n", check=False))
    assert instance.user_row(ALICE) is None
    assert snapshot(instance.mail_root) == before


def test_user_name_unicode_and_json_escapes(instance):
    name = 'J\u00fcrgen \u00d8st "quoted" back\\slash \U0001F426'
    instance.run("user", "add", ALICE, "--password-stdin", "--name", name, input="pw\n")
    assert instance.user_row(ALICE)["name"] == name, "stored name (raw SQL) differs"
    assert user_fields(instance.run("user", "show", ALICE).stdout.rstrip("\n"))["name"] == name
    assert instance.json("user", "show", ALICE, "--json")["name"] == name
    assert_error(instance.run("user", "add", "bob@" + DOMAIN, "--name", "two\nlines", check=False))
    assert instance.user_row("bob@" + DOMAIN) is None


def test_user_long_address_all_or_nothing(instance):
    """A valid 64-character local part in a long hosted domain: either the
    user is added completely, or the command fails and leaves no row and no
    maildir behind."""
    dom = ("d" * 60 + "." + "e" * 60 + ".test")
    local = "l" * 64
    addr = local + "@" + dom
    assert len(addr) <= 254
    instance.run("domain", "add", dom)
    before = snapshot(instance.mail_root)
    cp = instance.run("user", "add", addr, "--password-stdin", input="pw\n", check=False)
    md = os.path.join(instance.mail_root, dom, local)
    if cp.returncode == 0:
        assert instance.user_row(addr) is not None
        assert maildir_ok(md)
        assert instance.auth(addr, "pw")
    else:
        assert_error(cp)
        assert instance.user_row(addr) is None
        assert snapshot(instance.mail_root) == before, \
            "failed user add left %s behind\n%s" % (sorted(snapshot(instance.mail_root) - before)[:2],
                                                     describe(cp))


def test_user_local_part_too_long(instance):
    assert_error(instance.run("user", "add", "l" * 65 + "@" + DOMAIN, "--password-stdin",
                              input="pw\n", check=False))
    assert instance.sql("SELECT COUNT(*) FROM users") == [("0",)]


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership is only set when run as root")
def test_user_maildir_owned_by_row_uid(instance):
    instance.add_user(ALICE, "pw")
    row = instance.user_row(ALICE)
    for sub in ("", "cur", "new", "tmp"):
        st = os.stat(os.path.join(instance.mail_root, DOMAIN, "alice", sub))
        assert (st.st_uid, st.st_gid) == (int(row["uid"]), int(row["gid"])), (sub, st, row)
    st = os.stat(os.path.join(instance.mail_root, DOMAIN))
    assert (st.st_uid, st.st_gid) == (int(row["uid"]), int(row["gid"]))


def test_maildirmake_folder_needs_no_database(petrel_bin, tmp_path):
    conf = tmp_path / "p.conf"
    conf.write_text("database = sqlite:%s/nodir/x.db\n" % tmp_path)
    md = tmp_path / "Maildir"
    assert_ok(run_petrel(petrel_bin, ["-c", str(conf), "maildirmake", str(md)], cwd=str(tmp_path)))
    assert_ok(run_petrel(petrel_bin, ["-c", str(conf), "maildirmake", str(md), "--folder", "Trash"],
                         cwd=str(tmp_path)))
    assert maildir_ok(str(md / ".Trash"))


def test_unknown_options_and_extra_arguments(instance):
    assert_error(instance.run("user", "add", ALICE, "--bogus", check=False))
    assert_error(instance.run("domain", "list", "a", "b", check=False))
    assert_error(instance.run("user", "show", ALICE, "extra", check=False))
    assert_error(instance.run("hash", "--scheme", check=False, input="x\n"))
    assert_error(instance.run("hash", check=False, input=""))
    assert instance.user_row(ALICE) is None


def test_empty_lists(instance):
    instance.run("domain", "del", DOMAIN)
    assert instance.run("domain", "list").stdout == ""
    assert instance.json("domain", "list", "--json") == []
    assert instance.run("user", "list").stdout == ""
    assert instance.json("user", "list", "--json") == []
    assert instance.run("alias", "list").stdout == ""
    assert instance.json("alias", "list", "--json") == []


@pytest.mark.parametrize("local", ["alice/new", "alice/.Sent", "/", "alice/cur/x"],
                         ids=["inside-new", "folder", "domain-dir", "deep"])
def test_user_maildir_cannot_overlap_another(instance, local):
    """'/' is atext, so "alice/new@example.test" is a syntactically valid address.
    petrel derives the maildir path from the local part: such a user must be
    refused (or get a path of its own) -- never a maildir inside another
    user's maildir (alice's new/ or a .Folder of hers) or the domain directory."""
    instance.add_user(ALICE, "pw")
    alice_md = os.path.realpath(os.path.join(instance.mail_root, DOMAIN, "alice"))
    before = snapshot(alice_md)
    addr = local + "@" + DOMAIN
    cp = instance.run("user", "add", addr, "--password-stdin", input="pw\n", check=False)
    if cp.returncode != 0:
        assert_error(cp)
        assert instance.sql("SELECT COUNT(*) FROM users") == [("1",)]
    else:
        row = instance.user_row(addr) or instance.user_row(addr.lower())
        assert row is not None, describe(cp)
        md = os.path.realpath(os.path.join(instance.mail_root, row["maildir"]))
        dom = os.path.realpath(os.path.join(instance.mail_root, DOMAIN))
        assert md != dom, "maildir of %s is the domain directory" % addr
        assert not (md + "/").startswith(alice_md + "/"), \
            "maildir of %s (%s) is inside alice's maildir" % (addr, row["maildir"])
    assert snapshot(alice_md) == before, "alice's maildir was changed: %s" % \
        sorted(snapshot(alice_md) ^ before)


def test_json_escapes_control_characters(instance):
    """Names put in by SQL may hold any character; --json must stay valid JSON."""
    name = "ctl\x01\x1f tab\t nl\n end \"q\" \\ \u00e9"
    instance.insert_user(ALICE, ALICE, DES_HASH, name=name)
    js = instance.json("user", "show", ALICE, "--json")
    assert js["name"] == name
    jl = instance.json("user", "list", "--json")
    assert [u["name"] for u in jl] == [name]
    instance.sql("INSERT INTO virtual (address, goto) VALUES ('x@%s', 'a\x01b@x.test,\"c\"@y.test')" % DOMAIN)
    ja = instance.json("alias", "list", "--json")
    assert {"address": "x@" + DOMAIN, "goto": ["a\x01b@x.test", "\"c\"@y.test"]} in ja, ja


# ---------------------------------------------------------------- hostile input and --json

BAD_TEXT = {
    "escape": "\x1b[31mred\x1b[0m",
    "bell": "a\x07b",
    "del": "a\x7fb",
    "c1-csi": "a\u009b31mb",
    "newline": "a\nb",
    "invalid-utf8": "caf\udce9",        # the byte 0xE9 alone (os.fsencode)
    "overlong": "\udcc0\udcaf",          # C0 AF: an overlong '/'
    "surrogate": "\udced\udca0\udc80",   # ED A0 80: an encoded surrogate
}


@pytest.mark.parametrize("kind", sorted(BAD_TEXT))
def test_user_add_name_refused(instance, kind):
    """--name must be valid UTF-8 without control characters (C0, DEL, C1):
    one-line error, exit 1, nothing written."""
    before = snapshot(instance.mail_root)
    cp = instance.run("user", "add", ALICE, "--name", BAD_TEXT[kind], check=False)
    assert_error(cp, "--name")
    assert "\x1b" not in cp.stderr
    assert instance.user_row(ALICE) is None
    assert snapshot(instance.mail_root) == before


@pytest.mark.parametrize("kind", ["escape", "del", "c1-csi", "invalid-utf8", "overlong",
                                  "surrogate"])
def test_address_with_bad_text_refused(instance, kind):
    """Addresses, alias targets and domains given to the CLI: valid UTF-8,
    no control characters."""
    bad = BAD_TEXT[kind].replace("\n", "")
    before = snapshot(instance.mail_root)
    for args in (["user", "add", "x%s@%s" % (bad, DOMAIN)],
                 ["alias", "add", "x%s@%s" % (bad, DOMAIN), ALICE],
                 ["alias", "add", "list@" + DOMAIN, "x%s@%s" % (bad, DOMAIN)],
                 ["domain", "add", "x%s.test" % bad]):
        cp = instance.run(*args, check=False)
        assert_error(cp)
        assert "\x1b" not in cp.stderr, args
    assert instance.sql("SELECT COUNT(*) FROM users") == [("0",)]
    assert instance.sql("SELECT COUNT(*) FROM virtual") == [("0",)]
    assert snapshot(instance.mail_root) == before


def test_user_add_utf8_name_and_address_accepted(instance):
    instance.run("user", "add", "jörg@" + DOMAIN, "--name", "Jörg Müller ✓")
    got = instance.json("user", "list", "--json")
    assert [(u["address"], u["name"]) for u in got] == [("jörg@" + DOMAIN, "Jörg Müller ✓")]


def test_json_output_always_valid(sqlite_instance):
    """What a howto database may already hold (control characters, invalid
    UTF-8 written by another tool) comes out of --json as valid JSON and
    valid UTF-8, control characters escaped, invalid bytes as U+FFFD."""
    import subprocess
    inst = sqlite_instance
    con = sqlite3.connect(inst.sqlite_path())
    name = b"Evil \x1b[2J\x07 \x7f \xc2\x9b \xff\xfe caf\xe9 \xed\xa0\x80 ok \xe2\x9c\x93"
    con.execute("INSERT INTO users (id, address, crypt, clear, name, uid, gid, home, domain, "
                "maildir, imapok, bool1, bool2) VALUES (?, ?, '', '', ?, 1000, 1000, '', ?, ?, "
                "1, 1, 1)",
                (b"m\xe9@" + DOMAIN.encode(), b"m\xe9@" + DOMAIN.encode(), name, DOMAIN,
                 b"x/m\xe9/"))
    con.execute("UPDATE users SET id = CAST(id AS TEXT), address = CAST(address AS TEXT), "
                "name = CAST(name AS TEXT), maildir = CAST(maildir AS TEXT)")
    con.commit()
    con.close()
    for args in (["user", "list", "--json"], ["user", "list", DOMAIN, "--json"]):
        cp = subprocess.run([inst.bin, "-c", inst.conf] + args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=inst.dir)
        assert cp.returncode == 0, cp
        text = cp.stdout.decode("utf-8")          # strict: valid UTF-8
        got = json.loads(text)
        assert len(got) == 1, got
        assert got[0]["name"] == ("Evil \x1b[2J\x07 \x7f \u009b \ufffd\ufffd caf\ufffd "
                                  "\ufffd\ufffd\ufffd ok \u2713"), got[0]["name"]
        assert got[0]["address"] == "m\ufffd@" + DOMAIN
        for c in ("\x1b", "\x07", "\x7f", "\u009b"):
            assert c not in text, "a raw control character in the JSON text"
