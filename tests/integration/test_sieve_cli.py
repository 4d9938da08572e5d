"""petrel sieve check FILE and petrel sieve test USER MSGFILE /
--script FILE MSGFILE...: the interpreter's own errors with line numbers,
the user's active script found as Pigeonhole lays it out (%h/sieve/*.sieve,
active one linked from %h/.dovecot.sieve), the actions printed and nothing
delivered."""

import os

from conftest import describe
from harness.instance import ALICE, BOB

MSG = ("Return-Path: <sender@example.org>\n"
       "From: Carol <carol@example.org>\n"
       "To: alice+news@example.test\n"
       "Subject: Weekly news\n"
       "\n"
       "body\n")


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_check_ok_and_errors(sqlite_instance, tmp_path):
    inst = sqlite_instance
    good = write(str(tmp_path / "good.sieve"),
                 'require ["fileinto", "imap4flags"];\n'
                 'if header :contains "subject" "news" {\n'
                 '  fileinto :flags "\\\\Seen" "News";\n}\n')
    cp = inst.run("sieve", "check", good)
    assert cp.stdout == "ok\n"
    bad = write(str(tmp_path / "bad.sieve"),
                'require "fileinto";\n'
                'if header :is "subject" "x" {\n'
                '  fileint "A";\n'
                '}\n'
                'redirect :copy "a@b.example";\n'
                'include "other";\n')
    cp = inst.run("sieve", "check", bad, check=False)
    assert cp.returncode == 1, describe(cp)
    assert cp.stdout == ""
    lines = cp.stderr.splitlines()
    assert lines == [
        "%s: line 3: unknown command 'fileint'" % bad,
        "%s: line 5: redirect: tag ':copy' requires extension 'copy' (missing require)" % bad,
        "%s: line 6: command 'include' requires extension 'include' (missing require)" % bad,
    ], describe(cp)
    syntax = write(str(tmp_path / "syntax.sieve"), 'keep;\n\nif true {\n  stop;\n')
    cp = inst.run("sieve", "check", syntax, check=False)
    assert cp.returncode == 1
    assert cp.stderr == "%s: line 3: block not closed (missing '}')\n" % syntax
    cp = inst.run("sieve", "check", str(tmp_path / "missing.sieve"), check=False)
    assert cp.returncode == 1 and cp.stderr.startswith("petrel: cannot open")
    big = write(str(tmp_path / "big.sieve"), "#" * (1024 * 1024 + 1))
    cp = inst.run("sieve", "check", big, check=False)
    assert cp.returncode == 1 and "larger than" in cp.stderr


def test_test_script_option(sqlite_instance, tmp_path):
    inst = sqlite_instance
    script = write(str(tmp_path / "s.sieve"),
                   'require ["fileinto", "envelope", "subaddress", "variables", "copy"];\n'
                   'if envelope :detail :matches "to" "*" { set "d" "${1}"; }\n'
                   'if address :domain :is "from" "example.org" {\n'
                   '  fileinto "From-${d}";\n'
                   '  redirect :copy "archive@example.net";\n}\n')
    msg = write(str(tmp_path / "m.eml"), MSG)
    cp = inst.run("sieve", "test", "--script", script, "--to", "alice+news@example.test", msg)
    assert cp.stdout == "store From-news\nredirect archive@example.net :copy\n"
    # the envelope sender defaults to Return-Path
    fscript = write(str(tmp_path / "f.sieve"),
                    'require ["envelope", "reject"];\n'
                    'if envelope :is "from" "sender@example.org" { reject "go away"; }\n')
    cp = inst.run("sieve", "test", "--script", fscript, msg)
    assert cp.stdout == "reject go away\n"
    # a run-time error: the message stays in INBOX, the error is shown
    rscript = write(str(tmp_path / "r.sieve"),
                    "".join('redirect "u%d@example.net";\n' % i for i in range(6)))
    cp = inst.run("sieve", "test", "--script", rscript, msg)
    assert cp.stdout == ("error line 5: more than 4 redirects\n"
                         "store INBOX (implicit keep)\n")
    cp = inst.run("-o", "sieve_max_redirects=6", "sieve", "test", "--script", rscript, msg)
    assert cp.stdout.count("redirect") == 6
    cp = inst.run("sieve", "test", "--script", str(tmp_path / "bad"), msg, check=False)
    assert cp.returncode == 1
    cp = inst.run("sieve", "test", "--script", script, check=False)
    assert cp.returncode == 1 and "missing argument" in cp.stderr


def test_test_script_include_and_editheader(sqlite_instance, tmp_path):
    """--script: include :personal reads the script's directory, :global
    sieve_global; the edited header is printed after its action."""
    inst = sqlite_instance
    main = write(str(tmp_path / "main.sieve"),
                 'require ["include", "editheader", "fileinto"];\n'
                 'include "tag";\ninclude :global :optional "g";\n'
                 'fileinto "Main";\n')
    write(str(tmp_path / "tag.sieve"),
          'require "editheader";\naddheader "X-Tag" "t";\ndeleteheader "return-path";\n'
          'deleteheader "to";\n')
    msg = write(str(tmp_path / "m.eml"), MSG)
    cp = inst.run("sieve", "test", "--script", main, msg)
    assert cp.stdout == ("store Main\n  | X-Tag: t\n  | Return-Path: <sender@example.org>\n"
                         "  | From: Carol <carol@example.org>\n  | Subject: Weekly news\n"), cp.stdout
    gdir = tmp_path / "global"
    write(str(gdir / "g.sieve"), 'require "fileinto";\nfileinto "Global";\n')
    cp = inst.run("-o", "sieve_global=%s" % gdir, "sieve", "test", "--script", main, msg)
    acts = [x for x in cp.stdout.splitlines() if not x.startswith("  | ")]
    assert acts == ["store Global", "store Main"], cp.stdout


def test_test_user_active_script(sqlite_instance, tmp_path):
    inst = sqlite_instance
    inst.add_user(ALICE)
    inst.add_user(BOB)
    msg = write(str(tmp_path / "m.eml"), MSG)
    home = str(tmp_path / "alice-home")
    inst.sql("UPDATE users SET home = ? WHERE address = ?", (home, ALICE))
    cp = inst.run("sieve", "test", ALICE, msg)
    assert cp.stdout == ("no active script (%s/.dovecot.sieve)\n"
                         "store INBOX (implicit keep)\n" % home)
    write(os.path.join(home, "sieve", "rules.sieve"),
          'require ["fileinto", "subaddress"];\n'
          'if address :detail "to" "news" { fileinto "News"; }\n')
    os.symlink("sieve/rules.sieve", os.path.join(home, ".dovecot.sieve"))
    cp = inst.run("sieve", "test", ALICE, msg)
    assert cp.stdout == "store News\n"
    # include reads the user's sieve_dir
    write(os.path.join(home, "sieve", "rules.sieve"),
          'require ["include"];\ninclude "inner";\n')
    write(os.path.join(home, "sieve", "inner.sieve"),
          'require ["fileinto", "subaddress"];\n'
          'if address :detail "to" "news" { fileinto "Inner"; }\n')
    cp = inst.run("sieve", "test", ALICE, msg)
    assert cp.stdout == "store Inner\n"
    # nothing was delivered
    maildir = os.path.join(inst.mail_root, "example.test", "alice")
    for sub in ("new", "cur"):
        assert os.listdir(os.path.join(maildir, sub)) == []
    # no home: %h is the maildir's parent
    inst.sql("UPDATE users SET home = '' WHERE address = ?", (BOB,))
    bob_h = os.path.join(inst.mail_root, "example.test")
    write(os.path.join(bob_h, ".dovecot.sieve"), "discard;\n")
    cp = inst.run("sieve", "test", BOB, msg)
    assert cp.stdout == "discard\n"
    # a broken active script is reported with its path
    write(os.path.join(bob_h, ".dovecot.sieve"), "discard\n")
    cp = inst.run("sieve", "test", BOB, msg, check=False)
    assert cp.returncode == 1 and cp.stderr == ("%s/.dovecot.sieve: line 2: expected ';' or '{', found end of script\n" % bob_h)
    cp = inst.run("sieve", "test", "nobody@example.test", msg, check=False)
    assert cp.returncode == 1 and cp.stderr == "petrel: no such user: nobody@example.test\n"


def test_manage_scripts(sqlite_instance, tmp_path):
    """sieve put/list/show/activate/deactivate/delete: Pigeonhole's layout
    (NAME.sieve in %h/sieve, %h/.dovecot.sieve a relative link to the active
    one), a script that does not parse refused with its errors, bad names
    and the active script's deletion refused, and `sieve test` then runs
    the script activated here."""
    inst = sqlite_instance
    inst.add_user(ALICE, "pw")
    home = inst.json("user", "show", ALICE, "--json")["home"]
    assert inst.run("sieve", "list", ALICE).stdout == ""
    news = write(str(tmp_path / "news.sieve"),
                 'require "fileinto";\nif header :contains "subject" "news" '
                 '{ fileinto "News"; }\n')
    bad = write(str(tmp_path / "bad.sieve"), 'fileinto "X";\n')
    assert inst.run("sieve", "put", ALICE, "news", news).stdout == "ok\n"
    assert inst.run("sieve", "put", ALICE, "spare", news).stdout == "ok\n"
    cp = inst.run("sieve", "put", ALICE, "broken", bad, check=False)
    assert cp.returncode == 1 and "line 1:" in cp.stderr, describe(cp)
    for name in (".hidden", "a/b", "x\x01y", "n" * 129):
        cp = inst.run("sieve", "put", ALICE, name, news, check=False)
        assert cp.returncode == 1 and "invalid script name" in cp.stderr, describe(cp)
    assert sorted(os.listdir(os.path.join(home, "sieve"))) == ["news.sieve", "spare.sieve"]
    assert inst.run("sieve", "show", ALICE, "news").stdout == open(news).read()
    cp = inst.run("sieve", "show", ALICE, "nothing", check=False)
    assert cp.returncode == 1 and "no script" in cp.stderr
    assert inst.run("sieve", "list", ALICE).stdout == "news\nspare\n"

    assert inst.run("sieve", "activate", ALICE, "news").stdout == "ok\n"
    assert os.readlink(os.path.join(home, ".dovecot.sieve")) == "sieve/news.sieve"
    assert inst.run("sieve", "list", ALICE).stdout == "news ACTIVE\nspare\n"
    msg = write(str(tmp_path / "m.eml"), MSG)
    assert inst.run("sieve", "test", ALICE, msg).stdout == "store News\n"
    cp = inst.run("sieve", "delete", ALICE, "news", check=False)
    assert cp.returncode == 1 and "active" in cp.stderr, describe(cp)
    cp = inst.run("sieve", "activate", ALICE, "nothing", check=False)
    assert cp.returncode == 1 and "no script" in cp.stderr
    assert inst.run("sieve", "activate", ALICE, "spare").stdout == "ok\n"
    assert inst.run("sieve", "delete", ALICE, "news").stdout == "ok\n"
    assert inst.run("sieve", "list", ALICE).stdout == "spare ACTIVE\n"
    assert inst.run("sieve", "deactivate", ALICE).stdout == "ok\n"
    assert not os.path.lexists(os.path.join(home, ".dovecot.sieve"))
    assert inst.run("sieve", "list", ALICE).stdout == "spare\n"
    cp = inst.run("sieve", "list", "nobody@example.test", check=False)
    assert cp.returncode == 1 and "no such user" in cp.stderr
    # a script file (not a link) in the way is left alone
    write(os.path.join(home, ".dovecot.sieve"), "keep;\n")
    cp = inst.run("sieve", "activate", ALICE, "spare", check=False)
    assert cp.returncode == 1 and "not a link" in cp.stderr, describe(cp)
    assert open(os.path.join(home, ".dovecot.sieve")).read() == "keep;\n"
