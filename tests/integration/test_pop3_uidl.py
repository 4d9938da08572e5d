"""POP3 UIDLs of maildrops moved from Courier or Dovecot (pop3_uidl_format,
docs/migration.md "POP3 UIDLs"): the UIDLs the old server gave are answered
unchanged, new messages get the old server's next ones, and Courier's
courierpop3dsizelist is kept as Courier pop3d keeps it, so that a switch
back answers the same. The default (filename) is today's form."""

import os

from conftest import assert_error, run_petrel
from pop3_util import ALICE, BOB, key, maildir_of, message, pquit, put

M1 = "1500000001.M1P1.oldhost"
M2 = "1500000002.M2P2.oldhost"
M3 = "1500000003.M3P3.oldhost"


def uidls(srv, user=ALICE):
    p = srv.login(user)
    out = [l.split()[1].decode() for l in p.uidl()[1]]
    pquit(p)
    return out


def plant(inst, user, files, extra):
    """Message files (name, info) in cur/, and legacy files {name: text}."""
    for n, (name, info) in enumerate(files, 1):
        put(inst, user, message(n), name=name, sub="cur", info=info)
    md = maildir_of(inst, user)
    st = os.stat(md)
    for name, text in extra.items():
        path = os.path.join(md, name)
        with open(path, "w") as f:
            f.write(text)
        os.chown(path, st.st_uid, st.st_gid)
    return md


def read(md, name):
    with open(os.path.join(md, name)) as f:
        return f.read()


def courier_drop(inst, user=ALICE):
    return plant(inst, user, [(M1, "2,S"), (M2, "2,"), (M3, "2,RS")], {
        "courierimapuiddb": "1 1400000000 4\n1 %s\n2 %s\n3 %s\n" % (M1, M2, M3),
        "courierpop3dsizelist": "/3 21 1600000000\n"
                                "%s:2,S 120 18:1600000000:0\n"
                                "%s:2, 120 19:1600000000:0\n"
                                "%s:2,S 120 20:1600000000:0\n" % (M1, M2, M3),
    })


def new_mail(srv, n, rcpt=ALICE):
    srv.smtp_send("x@example.org", [rcpt], message(100 + n).replace(b"\n", b"\r\n"))


def test_default_is_the_file_name(pop3_inst, pop3_start):
    md = courier_drop(pop3_inst)
    before = read(md, "courierpop3dsizelist")
    srv = pop3_start(pop3_inst)
    assert uidls(srv) == [M1, M2, M3]
    assert read(md, "courierpop3dsizelist") == before


def test_courier_uidls_kept_and_continued(pop3_inst, pop3_start):
    md = courier_drop(pop3_inst)
    srv = pop3_start(pop3_inst, ["pop3_uidl_format=courier"])
    old = ["UID18-1600000000", "UID19-1600000000", "UID20-1600000000"]
    assert uidls(srv) == old
    # the list Courier reads back is unchanged by a session without news
    assert read(md, "courierpop3dsizelist").startswith("/3 21 1600000000\n")
    new_mail(srv, 1)
    got = uidls(srv)
    assert got == old + ["UID21-1600000000"], got
    text = read(md, "courierpop3dsizelist")
    assert text.startswith("/3 22 1600000000\n"), text
    newname = os.listdir(os.path.join(md, "new"))
    assert len(newname) == 1
    line = [l for l in text.splitlines() if l.startswith(key(newname[0]))]
    assert len(line) == 1 and line[0].endswith(" 21:1600000000:0"), text
    # DELE 1 and QUIT: gone from the drop, and from the list at the next
    # login (as Courier does); its number is never given again
    p = srv.login()
    p.dele(1)
    pquit(p)
    new_mail(srv, 2)
    got = uidls(srv)
    assert got == old[1:] + ["UID21-1600000000", "UID22-1600000000"], got
    text = read(md, "courierpop3dsizelist")
    assert text.startswith("/3 23 1600000000\n") and M1 not in text, text


def test_courier_list_made_for_a_new_drop(pop3_inst, pop3_start):
    srv = pop3_start(pop3_inst, ["pop3_uidl_format=courier"])
    new_mail(srv, 1)
    new_mail(srv, 2)
    got = uidls(srv)
    assert len(got) == 2 and got[0].startswith("UID1-") and got[1].startswith("UID2-"), got
    uidv = got[0].split("-")[1]
    assert got[1] == "UID2-" + uidv
    md = maildir_of(pop3_inst, ALICE)
    assert read(md, "courierpop3dsizelist").startswith("/3 3 %s\n" % uidv)
    assert uidls(srv) == got


def test_dovecot_uidls(pop3_inst, pop3_start):
    md = plant(pop3_inst, ALICE, [(M1, "2,S"), (M2, "2,"), (M3, "2,S")], {
        "dovecot-uidlist": "3 V1234 N300 G0123456789abcdef0123456789abcdef\n"
                           "5 :%s:2,S\n"
                           "7 W120 :%s:2,\n"
                           "9 P00000002000004d1 :%s:2,S\n" % (M1, M2, M3),
    })
    srv = pop3_start(pop3_inst, ["pop3_uidl_format=dovecot"])
    old = ["00000005000004d2", "00000007000004d2", "00000002000004d1"]
    assert uidls(srv) == old
    new_mail(srv, 1)
    # the next UID after dovecot-uidlist's N300
    assert uidls(srv) == old + ["0000012c000004d2"]
    assert not os.path.exists(os.path.join(md, "courierpop3dsizelist"))


def test_auto_per_maildrop(pop3_inst, pop3_start):
    courier_drop(pop3_inst, ALICE)
    plant(pop3_inst, BOB, [(M1, "2,S")], {
        "dovecot-uidlist": "3 V77 N10\n4 :%s:2,S\n" % M1,
    })
    srv = pop3_start(pop3_inst, ["pop3_uidl_format=auto"])
    assert uidls(srv, ALICE) == ["UID18-1600000000", "UID19-1600000000",
                                 "UID20-1600000000"]
    assert uidls(srv, BOB) == ["000000040000004d"]


def test_bad_value_refused(sqlite_instance):
    cp = run_petrel(sqlite_instance.bin, ["-c", sqlite_instance.conf, "-o",
                                          "pop3_uidl_format=uid", "domain", "list"])
    assert_error(cp, "pop3_uidl_format", "courier")
