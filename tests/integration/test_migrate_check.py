"""`petrel migrate check` (docs/migration.md): reads the configuration, the
directory and a sample of the users' Maildirs, and names the settings that
keep the replaced stack's behaviour. Exit 0 when nothing is to change, 2
when it names settings or notes, 1 with one line when it cannot tell.
Applying what it says makes it answer "nothing to change"."""

import json
import os
import pwd

import pytest

from conftest import DOMAIN, assert_error, describe
from test_schema_presets import POSTFIX_HOWTO, exim_layout, pfa_layout

ALICE = "alice@" + DOMAIN
BOB = "bob@" + DOMAIN


def migrate(inst, *args, opts=()):
    pre = []
    for o in opts:
        pre += ["-o", o]
    cp = inst.run(*(pre + ["migrate", "check"] + list(args) + ["--json"]), check=False)
    assert cp.returncode in (0, 2), describe(cp)
    js = json.loads(cp.stdout)
    assert (cp.returncode == 0) == (js["settings"] == [] and js["notes"] == []), describe(cp)
    return cp.returncode, js


def settings(js):
    return {s["key"]: s["value"] for s in js["settings"]}


def as_opts(js):
    return ["%s=%s" % (k, v) for k, v in settings(js).items()]


def maildir(inst, address):
    local, dom = address.split("@")
    return os.path.join(inst.mail_root, dom, local)


def courier(md):
    """What Courier-IMAP and pop3d leave in a Maildir and a folder."""
    with open(os.path.join(md, "courierimapuiddb"), "w") as f:
        f.write("1 1700000000 3\n1 a.b.c\n2 d.e.f\n")
    with open(os.path.join(md, "courierpop3dsizelist"), "w") as f:
        f.write("/3 3 1700000000\n")
    for s in ("cur", "new", "tmp", "courierimapkeywords"):
        os.makedirs(os.path.join(md, ".Work", s), exist_ok=True)
    with open(os.path.join(md, "courierimapsubscribed"), "w") as f:
        f.write("INBOX.Work\n")


def dovecot(md):
    with open(os.path.join(md, "dovecot-uidlist"), "w") as f:
        f.write("3 V1700000000 N5 G0123456789abcdef\n")
    with open(os.path.join(md, "dovecot-keywords"), "w") as f:
        f.write("0 $Label1\n")


def test_fresh_instance_nothing_to_change(sqlite_instance):
    sqlite_instance.add_user(ALICE, "pw")
    cp = sqlite_instance.run("migrate", "check", check=False)
    assert cp.returncode == 0, describe(cp)
    assert cp.stdout.splitlines()[-1] == "nothing to change", describe(cp)
    assert "layout: postfix-howto; 1 maildir(s)" in cp.stdout, describe(cp)
    rc, js = migrate(sqlite_instance)
    assert rc == 0 and js["layout"] == "postfix-howto" and js["maildirs"] == 1, js


def test_courier_host(sqlite_instance):
    inst = sqlite_instance
    inst.add_user(ALICE, "pw")
    inst.add_user(BOB, "pw")
    courier(maildir(inst, ALICE))
    courier(maildir(inst, BOB))
    inst.run("alias", "add", "@" + DOMAIN, ALICE)
    cp = inst.run("migrate", "check", check=False)
    assert cp.returncode == 2, describe(cp)
    assert "set pop3_uidl_format = courier   # " in cp.stdout, cp.stdout
    assert "set imap_namespace_prefix = INBOX.   # " in cp.stdout, cp.stdout
    rc, js = migrate(inst)
    assert (js["maildirs"], js["courier"], js["dovecot"]) == (2, 2, 0), js
    assert settings(js) == {"pop3_uidl_format": "courier", "imap_namespace_prefix": "INBOX.",
                            "smtp_helo_required": "no", "smtp_strict_envelopes": "no",
                            "recipient_delimiter": "", "catchall_order": "postfix"}, js
    rc, js = migrate(inst, opts=as_opts(js))
    assert rc == 0, js


def test_dovecot_and_mixed_paths(sqlite_instance):
    inst = sqlite_instance
    inst.add_user(ALICE, "pw")
    inst.add_user(BOB, "pw")
    dovecot(maildir(inst, ALICE))
    rc, js = migrate(inst)
    s = settings(js)
    assert s["pop3_uidl_format"] == "dovecot" and "imap_namespace_prefix" not in s, js
    assert "catchall_order" not in s, "no catch-all, nothing to say"
    # paths given: only those are looked at
    courier(maildir(inst, BOB))
    rc, js = migrate(inst, maildir(inst, BOB))
    assert js["maildirs"] == 1 and settings(js)["pop3_uidl_format"] == "courier", js
    rc, js = migrate(inst, maildir(inst, ALICE), maildir(inst, BOB))
    assert settings(js)["pop3_uidl_format"] == "auto", js
    assert "imap_namespace_prefix" not in settings(js)
    assert any("Courier and Dovecot" in n for n in js["notes"]), js
    rc, js = migrate(inst, opts=as_opts(js))
    assert settings(js) == {} and rc == 2, "the mixed host's note stays"


def test_exim_layout(instance):
    """The Exim howto's tables under a configuration as `petrel init` wrote
    it (every query_* line the Postfix howto's): the schema, and the query
    lines that would override its preset."""
    exim_layout(instance)
    with open(instance.conf) as f:
        text = f.read().replace("schema = exim-howto\n", "")
    with open(instance.conf, "w") as f:
        f.write(text + "".join("%s = %s\n" % kv for kv in POSTFIX_HOWTO.items()))
    rc, js = migrate(instance)
    s = settings(js)
    assert rc == 2 and js["layout"] == "exim-howto" and s["schema"] == "exim-howto", js
    assert s["query_user"].startswith("SELECT id, id, crypt"), s
    assert s["query_alias"] == "", s
    assert set(k for k in s if k.startswith("query_")) == set(POSTFIX_HOWTO), s
    assert s["smtp_helo_required"] == "no", s
    assert "catchall_order" not in s and "pop3_uidl_format" not in s, s
    rc, js2 = migrate(instance, opts=as_opts(js))
    assert rc == 0, js2
    # what it said makes the howto's user log in
    args = sum((["-o", o] for o in as_opts(js)), [])
    cp = instance.run(*args, "user", "auth", "kasperl@example.com", input="lrepsak\n", check=False)
    assert cp.returncode == 0, describe(cp)
    cp = instance.run("user", "auth", "kasperl@example.com", input="lrepsak\n", check=False)
    assert cp.returncode == 1, "the Postfix howto's queries fail on these tables"


def test_postfixadmin_layout(instance):
    pfa_layout(instance)
    with open(instance.conf) as f:
        text = f.read().replace("schema = postfixadmin\n", "")
    with open(instance.conf, "w") as f:
        f.write(text)
    rc, js = migrate(instance)
    s = settings(js)
    assert js["layout"] == "postfixadmin" and s["schema"] == "postfixadmin", js
    assert s["catchall_order"] == "postfix", "PostfixAdmin's @example.com"
    assert not any(k.startswith("query_") for k in s), "no query lines in the file"
    rc, js = migrate(instance, opts=as_opts(js))
    assert rc == 0, js


def test_clear_only_rows(sqlite_instance):
    inst = sqlite_instance
    inst.insert_user("carol@" + DOMAIN, "carol@" + DOMAIN, "")
    inst.sql("UPDATE users SET clear = 'c-pw' WHERE id = 'carol@%s'" % DOMAIN)
    rc, js = migrate(inst)
    q = settings(js)["query_login"]
    assert "clear" in q, js
    assert inst.run("user", "auth", "carol@" + DOMAIN, input="c-pw\n", check=False).returncode == 1
    cp = inst.run("-o", "query_login=" + q, "user", "auth", "carol@" + DOMAIN, input="c-pw\n",
                  check=False)
    assert cp.returncode == 0, describe(cp)


def test_maildir_owners(sqlite_instance):
    if os.geteuid() != 0:
        pytest.skip("needs root to give maildirs to other accounts")
    inst = sqlite_instance
    inst.add_user(ALICE, "pw")
    inst.add_user(BOB, "pw")
    nobody = pwd.getpwnam("nobody")
    for a in (ALICE, BOB):
        os.chown(maildir(inst, a), nobody.pw_uid, nobody.pw_gid)
    rc, js = migrate(inst)
    assert settings(js).get("user") == "nobody", js
    os.chown(maildir(inst, BOB), 0, 0)
    os.chown(maildir(inst, BOB), nobody.pw_uid + 1 if nobody.pw_uid < 65000 else 1, 0)
    rc, js = migrate(inst)
    assert "user" not in settings(js), js
    assert any("2 different accounts" in n for n in js["notes"]), js


def test_errors(sqlite_instance, tmp_path):
    inst = sqlite_instance
    assert_error(inst.run("migrate", "check", str(tmp_path / "nope"), check=False), "no maildir")
    assert_error(inst.run("-o", "database=mysql://x:y@127.0.0.1:1/nodb", "migrate", "check",
                          check=False))
    assert_error(inst.run("migrate", "frob", check=False), "migrate")
    assert_error(inst.run("migrate", "check", "--nope", check=False), "--nope")



def test_transports_noted(sqlite_instance):
    inst = sqlite_instance
    inst.sql("INSERT INTO transport (domain, transport) VALUES ('lmtp.test', "
             "'lmtp:unix:private/dovecot-lmtp')")
    inst.sql("INSERT INTO transport (domain, transport) VALUES ('md.test', 'maildrop:')")
    inst.sql("INSERT INTO transport (domain, transport) VALUES ('relay.test', 'smtp:[mx.relay.test]')")
    rc, js = migrate(inst)
    assert rc == 2 and settings(js) == {}, js
    assert len(js["notes"]) == 2, js
    assert any("lmtp.test" in n and "deferred" in n for n in js["notes"]), js
    assert any("md.test" in n and "maildrop" in n for n in js["notes"]), js
    cp = inst.run("migrate", "check", check=False)
    assert cp.returncode == 2 and "# note: domain lmtp.test" in cp.stdout, describe(cp)
