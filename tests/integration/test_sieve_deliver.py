"""Sieve at delivery (docs/sieve.md): SMTP mail for local users runs
sieve_before, the user's active script (%h/.dovecot.sieve linked into
%h/sieve, as Pigeonhole lays it out) and sieve_after; fileinto (with
:create making the folder), flags seen over IMAP, discard, redirect to a
local user and into the queue, ereject answered 550 at DATA for a single
recipient, reject with two recipients answered by a refusal to the
sender, editheader changes in the copies stored and redirected after
them (never in another recipient's copy), duplicate remembering a
Message-ID on disk, include of personal and sieve_global scripts (a
changed included script read again), and every failing script (broken, over a limit, a link out of
sieve_dir) keeping the message in INBOX with one log line. One server
for the module (SQLite)."""

import os
import smtplib

import pytest

from imap_util import PASSWORD, check_stopped, start_imap
from harness.instance import add_users, make_instance
from harness.maildir import listdir, maildir_of

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
DAVE = "dave@example.test"
ERIN = "erin@example.test"
FRANK = "frank@example.test"
GRACE = "grace@example.test"
HENRY = "henry@example.test"
IVY = "ivy@example.test"
JACK = "jack@example.test"
KATE = "kate@example.test"
LEO = "leo@example.test"

BEFORE = 'require ["fileinto", "copy", "envelope", "mailbox"];\n' \
         'if envelope :is "to" "%s" { fileinto :copy :create "Before"; }\n' % DAVE
AFTER = 'require ["fileinto", "copy", "envelope", "mailbox"];\n' \
        'if envelope :is "to" "%s" { fileinto :copy :create "After"; }\n' % DAVE


def msg(subject, sender="sender@example.org", extra=""):
    return ("From: %s\r\nTo: someone@example.test\r\nSubject: %s\r\n%s"
            "Message-ID: <%s@example.org>\r\n\r\nbody of %s\r\n"
            % (sender, subject, extra, subject.replace(" ", "."), subject)).encode()


def home(inst, address):
    return maildir_of(inst, address)


def install(inst, address, script, name="rules"):
    """The Dovecot layout: ~/sieve/NAME.sieve, ~/.dovecot.sieve -> it
    (a relative link, as Pigeonhole makes it)."""
    h = home(inst, address)
    os.makedirs(os.path.join(h, "sieve"), exist_ok=True)
    with open(os.path.join(h, "sieve", name + ".sieve"), "w") as f:
        f.write(script)
    link = os.path.join(h, ".dovecot.sieve")
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.path.join("sieve", name + ".sieve"), link)


def files(inst, address, folder=None):
    d = maildir_of(inst, address)
    if folder is not None:
        d = os.path.join(d, "." + folder)
    return [n for sub in ("new", "cur") for n in listdir(os.path.join(d, sub))]


def send(srv, sender, rcpts, data):
    with smtplib.SMTP(srv.host, srv.smtp_port, local_hostname="client.test",
                      timeout=30) as s:
        return s.sendmail(sender, rcpts, data)


@pytest.fixture(scope="module")
def srv(petrel_bin, tmp_path_factory):
    base = tmp_path_factory.mktemp("sieve-deliver")
    inst = make_instance(petrel_bin, base / "inst", "sqlite")
    add_users(inst, (ALICE, BOB, CAROL, DAVE, ERIN, FRANK, GRACE, HENRY, IVY, JACK,
                    KATE, LEO),
              password=PASSWORD)
    before = base / "before.d"
    before.mkdir()
    (before / "10-dave.sieve").write_text(BEFORE)
    (before / "20-henry.sieve").write_text(
        'require ["editheader", "envelope"];\n'
        'if envelope :is "to" "%s" { addheader "X-Before" "yes"; }\n' % HENRY)
    (before / "README").write_text("not a script\n")
    after = base / "after.sieve"
    after.write_text(AFTER)
    glob = base / "global"
    glob.mkdir()
    (glob / "spam.sieve").write_text(
        'require ["fileinto", "mailbox"];\n'
        'if header :contains "subject" "spam" { fileinto :create "Junk"; stop; }\n')
    s = start_imap(inst, ("sieve_before=%s" % before, "sieve_after=%s" % after,
                          "sieve_global=%s" % glob,
                          "sieve_max_redirects=2", "relayhost=[127.0.0.1]:9",
                          "queue_retry_min=3600"))
    s.base = base
    yield s
    problems = check_stopped([s])
    assert not problems, problems


def test_user_home_is_own(srv):
    inst = srv.instance
    a = inst.json("user", "show", ALICE, "--json")
    b = inst.json("user", "show", BOB, "--json")
    assert a["home"] == maildir_of(inst, ALICE).rstrip("/"), a
    assert a["home"] != b["home"] and a["home"] != inst.mail_root.rstrip("/")


def test_fileinto_create_flags_and_keep(srv):
    inst = srv.instance
    install(inst, ALICE,
            'require ["fileinto", "mailbox", "imap4flags"];\n'
            'if header :contains "subject" "news" {\n'
            '  fileinto :create :flags ["\\\\Seen", "\\\\Flagged"] "News";\n'
            '} elsif header :contains "subject" "nofolder" {\n'
            '  fileinto "Missing";\n'
            '} elsif header :contains "subject" "junk" {\n'
            '  discard;\n'
            '} else {\n'
            '  addflag "\\\\Answered";\n'
            '}\n')
    send(srv, "sender@example.org", [ALICE], msg("weekly news"))
    send(srv, "sender@example.org", [ALICE], msg("plain"))
    send(srv, "sender@example.org", [ALICE], msg("nofolder here"))
    assert send(srv, "sender@example.org", [ALICE], msg("junk offer")) == {}
    assert len(files(inst, ALICE, "News")) == 1
    assert not os.path.exists(os.path.join(maildir_of(inst, ALICE), ".Missing"))
    assert len(files(inst, ALICE)) == 2     # plain, nofolder; junk discarded
    assert srv.wait_log(r"fileinto \"Missing\": no such folder, kept in INBOX")
    im = srv.imaplib()
    try:
        im.login(ALICE, PASSWORD)
        typ, data = im.list()
        names = b" ".join(data)
        assert b"News" in names and b"dovecot" not in names, data
        im.select("News")
        typ, data = im.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"\\Seen" in data[0][0] and b"\\Flagged" in data[0][0], data
        assert b"weekly news" in data[0][1]
        im.select("INBOX")
        typ, data = im.search(None, "ANSWERED")
        ids = data[0].split()
        assert len(ids) == 1, data
        typ, data = im.fetch(ids[0], "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"plain" in data[0][1], data
        typ, data = im.search(None, "SUBJECT", "junk")
        assert data[0] == b""
    finally:
        im.logout()


def test_redirect_local_and_remote(srv):
    inst = srv.instance
    install(inst, BOB,
            'require "copy";\n'
            'redirect "%s";\n'
            'redirect :copy "someone@remote.example";\n' % CAROL)
    before_carol = len(files(inst, CAROL))
    send(srv, "sender@example.org", [BOB], msg("forward me"))
    assert files(inst, BOB) == []       # redirect cancels the keep
    got = files(inst, CAROL)
    assert len(got) == before_carol + 1
    path = [os.path.join(maildir_of(inst, CAROL), sub, n) for sub in ("new", "cur")
            for n in got if os.path.exists(os.path.join(maildir_of(inst, CAROL), sub, n))]
    texts = [open(p, "rb").read() for p in path]
    assert any(b"Subject: forward me" in t and b"Return-Path: <sender@example.org>" in t
               for t in texts), texts
    assert srv.wait_log(r"sieve: someone@remote\.example as [0-9A-F]+")
    assert srv.wait_log(r"to=<someone@remote\.example>, status=queued \(remote\)")


def test_ereject_single_recipient_550(srv):
    inst = srv.instance
    install(inst, CAROL,
            'require "ereject";\n'
            'if header :contains "subject" "spam" { ereject "No spam here\nthanks"; }\n')
    n = len(files(inst, CAROL))
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(srv, "sender@example.org", [CAROL], msg("spam spam"))
    assert e.value.smtp_code == 550
    assert e.value.smtp_error == b"5.7.1 No spam here thanks", e.value.smtp_error
    assert len(files(inst, CAROL)) == n
    send(srv, "sender@example.org", [CAROL], msg("ham"))
    assert len(files(inst, CAROL)) == n + 1


def test_reject_two_recipients_refusal_to_sender(srv):
    inst = srv.instance
    install(inst, ERIN,
            'require "reject";\n'
            'if header :contains "subject" "meeting" { reject "I do not attend meetings."; }\n')
    n_frank = len(files(inst, FRANK))
    # frank sends to erin (rejects) and dave: accepted, dave gets it,
    # frank gets the refusal
    assert send(srv, FRANK, [ERIN, DAVE], msg("meeting monday", sender=FRANK)) == {}
    assert files(inst, ERIN) == []
    assert any(True for _ in files(inst, DAVE))
    got = files(inst, FRANK)
    assert len(got) == n_frank + 1, got
    d = maildir_of(inst, FRANK)
    texts = [open(os.path.join(d, sub, n), "rb").read() for sub in ("new", "cur")
             for n in listdir(os.path.join(d, sub))]
    refusal = [t for t in texts if b"Automatically rejected mail" in t]
    assert len(refusal) == 1, texts
    t = refusal[0]
    assert b"Return-Path: <>" in t
    assert b"report-type=disposition-notification" in t
    assert b"I do not attend meetings." in t
    assert b"Final-Recipient: rfc822; %s" % ERIN.encode() in t
    assert b"Subject: meeting monday" in t     # the original header quoted


def test_before_user_after_order(srv):
    inst = srv.instance
    install(inst, DAVE, 'require ["fileinto", "copy", "mailbox"];\n'
            'fileinto :copy :create "Mine";\n')
    send(srv, "sender@example.org", [DAVE], msg("ordered"))
    for folder in ("Before", "Mine", "After"):
        assert files(inst, DAVE, folder) != [], folder
    # this delivery's lines: sieve_before's copy, the user's, sieve_after's,
    # then the implicit keep into INBOX (every script copied with :copy)
    lines = [l for l in srv.log_lines()
             if "to=<%s>" % DAVE in l and "delivered to maildir" in l][-4:]
    dirs = [os.path.basename(l.split("delivered to maildir ")[1].strip().rstrip(")").rstrip("/"))
            for l in lines]
    assert dirs == [".Before", ".Mine", ".After", "dave"], lines


def test_failing_scripts_keep_in_inbox(srv):
    inst = srv.instance
    cases = [
        ('require "fileinto";\nif header :is "subject" "x" {\n  fileint "A";\n}\n',
         r"sieve: %s: .*/\.dovecot\.sieve: line 3: unknown command 'fileint'; kept in INBOX"),
        ('redirect "a@remote.example";\nredirect "b@remote.example";\n'
         'redirect "c@remote.example";\n',
         r"sieve: %s: .*/\.dovecot\.sieve: line 3: more than 2 redirects; kept in INBOX"),
    ]
    for i, (script, pattern) in enumerate(cases):
        install(inst, FRANK, script)
        n = len(files(inst, FRANK))
        send(srv, "sender@example.org", [FRANK], msg("failing %d" % i))
        assert len(files(inst, FRANK)) == n + 1, i
        assert srv.wait_log(pattern % FRANK.replace(".", r"\.")), "\n".join(l for l in srv.log_lines() if "sieve:" in l)
        # the user sees why in the copy itself, paths relative to the home
        newest = max((os.path.join(maildir_of(inst, FRANK), sub, f)
                      for sub in ("new", "cur")
                      for f in os.listdir(os.path.join(maildir_of(inst, FRANK), sub))),
                     key=os.path.getmtime)
        with open(newest, "rb") as f:
            head = f.read().split(b"\n\n", 1)[0].decode()
        err = [l for l in head.split("\n") if l.startswith("X-Sieve-Error: ")]
        want = pattern.split(": .*/")[1].replace("\\", "")
        assert len(err) == 1 and err[0].startswith("X-Sieve-Error: ~/.dovecot.sieve: "), err
        assert err[0].endswith(want), (err, want)
    # a link that leads out of sieve_dir is not followed
    outside = srv.base / "elsewhere.sieve"
    outside.write_text("discard;\n")
    link = os.path.join(home(inst, FRANK), ".dovecot.sieve")
    os.unlink(link)
    os.symlink(str(outside), link)
    n = len(files(inst, FRANK))
    send(srv, "sender@example.org", [FRANK], msg("outside link"))
    assert len(files(inst, FRANK)) == n + 1
    assert srv.wait_log(r"sieve: %s: .*\.dovecot\.sieve: not a file, nor a link into"
                 % FRANK.replace(".", r"\."))
    os.unlink(link)


def test_script_cache_sees_changes(srv):
    inst = srv.instance
    install(inst, ERIN, 'require ["fileinto", "mailbox"];\nfileinto :create "One";\n', name="cache")
    send(srv, "sender@example.org", [ERIN], msg("first"))
    # same path, new content (and size): parsed again
    install(inst, ERIN, 'require ["fileinto", "mailbox"];\nfileinto :create "Second";\n', name="cache")
    send(srv, "sender@example.org", [ERIN], msg("second"))
    assert len(files(inst, ERIN, "One")) == 1
    assert len(files(inst, ERIN, "Second")) == 1


def mail_to(to, subject, sender, extra=""):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n%s"
            "Message-ID: <%s@example.org>\r\n\r\nhello\r\n"
            % (sender, to, subject, extra, subject.replace(" ", "."))).encode()


def replies(inst, address):
    d = maildir_of(inst, address)
    out = []
    for sub in ("new", "cur"):
        for n in listdir(os.path.join(d, sub)):
            with open(os.path.join(d, sub, n), "rb") as f:
                t = f.read()
            if b"Auto-Submitted: auto-replied (vacation)" in t:
                out.append(t)
    return out


def test_vacation_once_per_sender_never_to_lists(srv):
    inst = srv.instance
    install(inst, GRACE, 'require "vacation";\n'
            'vacation :days 1 :subject "Away" "I am away until Monday.";\n')
    n_grace = len(files(inst, GRACE))
    send(srv, FRANK, [GRACE], mail_to(GRACE, "first question", FRANK))
    got = replies(inst, FRANK)
    assert len(got) == 1, got
    t = got[0]
    assert t.startswith(b"Return-Path: <>\n"), t[:200]
    assert b"Subject: Away\n" in t and b"I am away until Monday." in t
    assert b"From: %s" % GRACE.encode() in t and b"To: <%s>" % FRANK.encode() in t
    assert b"In-Reply-To: <first.question@example.org>" in t
    # the same sender again within the period: no second answer
    send(srv, FRANK, [GRACE], mail_to(GRACE, "second question", FRANK))
    assert len(replies(inst, FRANK)) == 1
    assert srv.wait_log(r"sieve: %s: no vacation reply to <%s>: already answered"
                        % (GRACE, FRANK))
    vdir = os.path.join(home(inst, GRACE), "sieve", ".petrel-vacation")
    assert len(os.listdir(vdir)) == 1
    # lists, bulk, automatic mail, the null sender, and mail that does
    # not name the user: never answered
    send(srv, CAROL, [GRACE], mail_to(GRACE, "list post", CAROL,
                                      "List-Id: <talk.example.org>\r\n"))
    send(srv, DAVE, [GRACE], mail_to(GRACE, "bulk post", DAVE, "Precedence: bulk\r\n"))
    send(srv, ERIN, [GRACE], mail_to(GRACE, "auto post", ERIN,
                                     "Auto-Submitted: auto-generated\r\n"))
    send(srv, "", [GRACE], mail_to(GRACE, "bounce", "MAILER-DAEMON@example.org"))
    send(srv, ALICE, [GRACE], mail_to("someone@example.test", "bcc copy", ALICE))
    for who in (CAROL, DAVE, ERIN, ALICE):
        assert replies(inst, who) == [], who
    for why in ("list mail", r"bulk mail \(Precedence\)", r"automatic mail",
                "null sender", "the user is not a recipient"):
        assert srv.wait_log(r"sieve: %s: no vacation reply to <[^>]*>: %s" % (GRACE, why)), why
    # every message was kept
    assert len(files(inst, GRACE)) == n_grace + 7


def read_all(inst, address, folder=None):
    d = maildir_of(inst, address)
    if folder is not None:
        d = os.path.join(d, "." + folder)
    out = []
    for sub in ("new", "cur"):
        for n in listdir(os.path.join(d, sub)):
            with open(os.path.join(d, sub, n), "rb") as f:
                out.append(f.read())
    return out


def test_editheader(srv):
    """addheader/deleteheader change the copies stored or redirected
    after them; the copy filed before, and the other recipient's own
    copy, are as they came (but for sieve_before's edit, which every
    later script sees); Received cannot be deleted; a non-ASCII value is
    RFC 2047-encoded."""
    inst = srv.instance
    install(inst, HENRY,
            'require ["editheader", "fileinto", "copy", "mailbox", "index"];\n'
            'fileinto :copy :create "Plain";\n'
            'addheader "X-Sieve" "tagged caf\u00e9";\n'
            'addheader :last "X-Note" "two words";\n'
            'deleteheader "x-remove";\n'
            'deleteheader :index 1 :contains "x-keep" "drop";\n'
            'deleteheader "received";\n'
            'redirect :copy "%s";\n'
            'fileinto :create "Edited";\n' % IVY)
    n_ivy = len(read_all(inst, IVY))
    extra = "X-Remove: a\r\nX-Keep: drop me\r\nX-Keep: drop too\r\nX-Remove: b\r\n"
    assert send(srv, "sender@example.org", [HENRY, IVY], msg("edit me", extra=extra)) == {}
    plain = read_all(inst, HENRY, "Plain")
    edited = read_all(inst, HENRY, "Edited")
    assert len(plain) == 1 and len(edited) == 1
    assert b"X-Remove: a" in plain[0] and b"X-Sieve" not in plain[0]
    assert b"\nX-Before: yes\n" in plain[0]
    head, body = edited[0].split(b"\n\n", 1)
    lines = head.split(b"\n")
    assert lines[0].startswith(b"Return-Path: <sender@example.org>"), head
    assert b"X-Sieve: =?UTF-8?B?dGFnZ2VkIGNhZsOp?=" in lines, head
    assert lines[-1] == b"X-Note: two words", head
    assert b"X-Before: yes" in lines, head
    assert b"X-Remove" not in head and b"X-Keep: drop me" not in head, head
    assert b"X-Keep: drop too" in head and b"Received: " in head, head
    assert head.count(b"Return-Path:") == 1 and head.count(b"Delivered-To:") == 1
    assert body == b"body of edit me\n"
    # ivy: her own copy as it came, and the redirected one edited
    got = read_all(inst, IVY)
    assert len(got) == n_ivy + 2
    new = [m for m in got if b"edit me" in m]
    assert len(new) == 2
    assert sorted(b"X-Sieve:" in m for m in new) == [False, True], new
    assert sorted(b"X-Before:" in m for m in new) == [False, True], new
    assert all(b"X-Remove: a" in m for m in new if b"X-Sieve" not in m)


def test_duplicate(srv):
    """The second message with a Message-ID goes to Dups; the record is a
    file under sieve_dir/.petrel-duplicate whose mtime is its expiry
    (7 days); :handle keeps its own IDs."""
    import time
    inst = srv.instance
    install(inst, JACK,
            'require ["duplicate", "fileinto", "mailbox"];\n'
            'if duplicate { fileinto :create "Dups"; }\n'
            'elsif duplicate :handle "tickets" :header "x-ticket" :seconds 3600 '
            '{ fileinto :create "SameTicket"; }\n')
    first = msg("dup one")
    send(srv, "sender@example.org", [JACK], first)
    send(srv, "sender@example.org", [JACK], first)
    send(srv, "sender@example.org", [JACK], msg("dup two", extra="X-Ticket: 7\r\n"))
    send(srv, "sender@example.org", [JACK], msg("dup three", extra="X-Ticket: 7\r\n"))
    assert len(files(inst, JACK, "Dups")) == 1
    assert len(files(inst, JACK, "SameTicket")) == 1
    assert len(files(inst, JACK)) == 2
    ddir = os.path.join(home(inst, JACK), "sieve", ".petrel-duplicate")
    names = os.listdir(ddir)
    assert len(names) == 4, names       # three Message-IDs, one ticket
    left = sorted(os.stat(os.path.join(ddir, n)).st_mtime - time.time() for n in names)
    assert 3500 < left[0] < 3700, left
    assert all(7 * 86400 - 100 < x < 7 * 86400 + 100 for x in left[1:]), left


def test_include(srv):
    """include :global from sieve_global, include :personal from
    sieve_dir with a global variable; a changed included script is
    parsed again; a missing one keeps the message in INBOX."""
    inst = srv.instance
    h = home(inst, KATE)
    install(inst, KATE,
            'require ["include", "variables", "fileinto", "mailbox"];\n'
            'global "box";\n'
            'include :global "spam";\n'
            'include :personal "pick";\n'
            'fileinto :create "${box}";\n')
    pick = os.path.join(h, "sieve", "pick.sieve")
    with open(pick, "w") as f:
        f.write('require ["include", "variables"];\nglobal "box";\nset "box" "One";\n')
    send(srv, "sender@example.org", [KATE], msg("buy spam now"))
    send(srv, "sender@example.org", [KATE], msg("hello one"))
    assert len(files(inst, KATE, "Junk")) == 1
    assert len(files(inst, KATE, "One")) == 1
    with open(pick, "w") as f:
        f.write('require ["include", "variables"];\nglobal "box";\n'
                'set "box" "Two";  # changed: parsed again\n')
    os.utime(pick, (1, 1))     # a different mtime even within one second
    send(srv, "sender@example.org", [KATE], msg("hello two"))
    assert len(files(inst, KATE, "Two")) == 1
    os.unlink(pick)
    n = len(files(inst, KATE))
    send(srv, "sender@example.org", [KATE], msg("hello three"))
    assert len(files(inst, KATE)) == n + 1
    assert srv.wait_log(r"sieve: %s: .*line 4: include: no personal script "
                        r"'pick'; kept in INBOX" % KATE)
    # a link out of sieve_dir is not read
    outside = os.path.join(str(srv.base), "outside.sieve")
    with open(outside, "w") as f:
        f.write('require ["variables", "include"];\nglobal "box";\nset "box" "Out";\n')
    os.symlink(outside, pick)
    send(srv, "sender@example.org", [KATE], msg("hello four"))
    assert len(files(inst, KATE)) == n + 2
    assert not os.path.exists(os.path.join(h, ".Out"))
    assert srv.wait_log(r"sieve: %s: .*include 'pick': .*pick\.sieve: not a file in "
                        r".*/sieve; kept in INBOX" % KATE)


def test_sieve_dir_setting_and_shared_home(petrel_bin, tmp_path):
    """sieve_dir elsewhere: a link into it is followed, a link into ~/sieve
    is not; a user whose home is mail_root (shared) gets the maildir's
    parent as %h."""
    inst = make_instance(petrel_bin, tmp_path / "inst", "sqlite")
    add_users(inst, (ALICE, BOB), password=PASSWORD)
    inst.add_user(GRACE, PASSWORD)
    install(inst, BOB, 'require "fileinto";\nfileinto "Never";\n')
    inst.sql("UPDATE users SET home = ? WHERE address = ?", (inst.mail_root, GRACE))
    h = home(inst, ALICE)
    os.makedirs(os.path.join(h, "rules"))
    with open(os.path.join(h, "rules", "a.sieve"), "w") as f:
        f.write('require ["fileinto", "mailbox"];\nfileinto :create "Ruled";\n')
    os.symlink("rules/a.sieve", os.path.join(h, ".dovecot.sieve"))
    shared = os.path.dirname(maildir_of(inst, GRACE).rstrip("/"))
    with open(os.path.join(shared, ".dovecot.sieve"), "w") as f:
        f.write('require ["fileinto", "mailbox"];\nfileinto :create "Shared";\n')
    srv = start_imap(inst, ("sieve_dir=%h/rules",))
    try:
        send(srv, "sender@example.org", [ALICE], msg("to rules"))
        send(srv, "sender@example.org", [GRACE], msg("to grace"))
        send(srv, "sender@example.org", [BOB], msg("to bob"))
        assert len(files(inst, ALICE, "Ruled")) == 1
        assert len(files(inst, GRACE, "Shared")) == 1
        assert len(files(inst, BOB)) == 1       # ~/sieve is not sieve_dir now
        assert srv.wait_log(r"sieve: %s: .*\.dovecot\.sieve: not a file, nor a "
                            r"link into .*/bob/rules; kept in INBOX" % BOB)
    finally:
        problems = check_stopped([srv])
    assert not problems, problems


def test_keywords_from_imap4flags(srv):
    """Keywords set by imap4flags reach IMAP: $Label1 and a custom keyword
    on a message filed into a folder, another on the implicit keep; the
    folder's dovecot-keywords names them as an IMAP STORE would."""
    inst = srv.instance
    install(inst, LEO,
            'require ["fileinto", "mailbox", "imap4flags"];\n'
            'if header :contains "subject" "tagged" {\n'
            '  fileinto :create :flags ["$Label1", "project-x", "\\\\Seen"] "Tagged";\n'
            '} else {\n'
            '  addflag "$Todo";\n'
            '}\n')
    send(srv, "sender@example.org", [LEO], msg("tagged mail"))
    send(srv, "sender@example.org", [LEO], msg("plain mail"))
    im = srv.imaplib()
    try:
        im.login(LEO, PASSWORD)
        im.select("Tagged")
        typ, data = im.fetch("1", "(FLAGS)")
        flags = data[0].decode()
        assert "$Label1" in flags and "project-x" in flags and "\\Seen" in flags, data
        typ, data = im.search(None, "KEYWORD", "project-x")
        assert data[0] == b"1", data
        im.select("INBOX")
        typ, data = im.fetch("1", "(FLAGS)")
        assert "$Todo" in data[0].decode() and "\\Seen" not in data[0].decode(), data
    finally:
        im.logout()
    with open(os.path.join(maildir_of(inst, LEO), ".Tagged", "dovecot-keywords")) as f:
        names = f.read().split()
    assert "$Label1" in names and "project-x" in names, names
