#!/usr/bin/python3
"""Users and mail folders for bench/compare.sh.

Adds users to petrel's SQLite directory by copying the row of a template
user that `petrel user add` made (same crypt hash, so the same password),
then writes the same generated messages, byte for byte, into each user's
Maildir under every mail root given (petrel's and the incumbent's), as the
vmail user (uid/gid of the template row), as if they had been delivered
long ago.

    mailgen.py DB TEMPLATE_ID DOMAIN MAILROOT[,MAILROOT...] SPEC...

SPEC is NAME:COUNT:KIND, KIND one of
  real   2-4 KiB messages with varied realistic headers (Received, encoded
         words, Cc, References, List-Id), every 5th multipart/alternative;
         flags as in a long-lived mailbox (most \\Seen, some answered or
         flagged, the newest 20 in new/); the word SEARCH_WORD in the body
         of every 50th message and the subject of every 500th
  big    ~100 KiB messages (every 4th multipart/mixed with a base64
         attachment, the others long text/plain), unseen, in cur/
  tiny   small messages (idle-connection users), \\Seen, in cur/
  empty  no messages (the SMTP sink)
NAME may be a range: u0-u1249:20:tiny makes u0 ... u1249.
"""
import base64
import os
import random
import sqlite3
import sys
import time
import zlib

SEARCH_WORD = "zeppelin"

FIRST = ["Anna", "Bernd", "Chloé", "Dmitri", "Eva", "François", "Gül", "Hiro", "Ines", "Jürgen",
         "Kasper", "Lena", "Mateo", "Nora", "Olaf", "Priya", "Quentin", "Rosa", "Sven", "Tomás"]
LAST = ["Müller", "Smith", "Dubois", "Ivanov", "Rossi", "García", "Kowalski", "Nakamura",
        "Jensen", "O'Brien", "Schmidt", "Novák"]
DOMS = ["example.org", "lists.example.net", "mail.example.com", "corp.example", "uni.example.edu"]
WORDS = ("meeting report budget review quarterly release planning invoice question update "
         "deadline draft schedule proposal minutes travel server outage patch security "
         "feedback agenda contract results training holiday").split()
LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
         "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute "
         "irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla "
         "pariatur.").split()


def die(msg):
    sys.stderr.write("mailgen: %s\n" % msg)
    sys.exit(1)


class Gen:
    def __init__(self, seed, domain, user):
        self.rnd = random.Random(seed)
        self.domain = domain
        self.user = user

    def addr(self):
        rnd = self.rnd
        f, l = rnd.choice(FIRST), rnd.choice(LAST)
        local = ("%s.%s" % (f.lower(), l.lower().replace("'", ""))).encode("ascii", "ignore").decode()
        name = "%s %s" % (f, l)
        if any(ord(c) > 127 for c in name):
            name = "=?UTF-8?B?%s?=" % base64.b64encode(name.encode()).decode()
        elif "'" in name:
            name = '"%s"' % name
        return "%s <%s@%s>" % (name, local, rnd.choice(DOMS))

    def text(self, nbytes, word=False):
        rnd = self.rnd
        out, size = [], 0
        while size < nbytes:
            line = " ".join(rnd.choice(LOREM) for _ in range(rnd.randint(8, 12)))
            out.append(line)
            size += len(line) + 1
        if word:
            k = rnd.randrange(len(out))
            out[k] = out[k] + " " + SEARCH_WORD
        return "\n".join(out) + "\n"

    def headers(self, i, ts, subj):
        rnd = self.rnd
        date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(ts))
        h = ["Return-Path: <bounce-%d@%s>" % (i, rnd.choice(DOMS)),
             "Delivered-To: %s@%s" % (self.user, self.domain),
             "Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\n\tby mail.%s"
             " with ESMTPS id %08X\n\tfor <%s@%s>; %s"
             % (i % 9, i % 9, i % 250, self.domain, i, self.user, self.domain, date),
             "Received: from client.example.org ([198.51.100.%d]) by mx.example.net;\n\t%s"
             % (i % 250, date),
             "From: " + self.addr(),
             "To: " + ", ".join(self.addr() for _ in range(rnd.randint(1, 3))),
             "Subject: " + subj,
             "Date: " + date,
             "Message-ID: <%d.%x@bench.example.org>" % (i, rnd.getrandbits(48))]
        if rnd.random() < 0.3:
            h.append("Cc: " + ", ".join(self.addr() for _ in range(rnd.randint(1, 4))))
        if i % 7 == 0 and i:
            h.append("In-Reply-To: <%d.0@bench.example.org>" % (i - 1))
            h.append("References: " + " ".join("<%d.0@bench.example.org>" % j
                                               for j in range(max(0, i - 4), i)))
        if rnd.random() < 0.2:
            h.append("List-Id: Bench list <bench.lists.example.net>")
        h.append("X-Mailer: bench/%d.%d" % (i % 5, i % 11))
        h.append("MIME-Version: 1.0")
        return h

    def subject(self, i, word=False):
        rnd = self.rnd
        subj = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(2, 7))).capitalize()
        if word:
            subj += " " + SEARCH_WORD
        if i % 7 == 0:
            subj = "Re: " + subj
        if i % 23 == 0:
            subj = "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_zum_" + subj.replace(" ", "_") + "?="
        return subj

    def real(self, i, ts):
        rnd = self.rnd
        h = self.headers(i, ts, self.subject(i, word=(i % 500 == 250)))
        size = rnd.randint(2048, 4096)
        word = i % 50 == 7
        if i % 5 == 0:
            body = ("--b%d\nContent-Type: text/plain; charset=utf-8\n\n%s--b%d\n"
                    "Content-Type: text/html; charset=utf-8\n\n<p>%s</p>\n--b%d--\n"
                    % (i, self.text(size // 2, word), i,
                       self.text(size // 3).replace("\n", "<br>\n"), i))
            h.append('Content-Type: multipart/alternative; boundary="b%d"' % i)
        else:
            h.append("Content-Type: text/plain; charset=utf-8")
            body = self.text(size - 700, word)
        return ("\n".join(h) + "\n\n" + body).encode()

    def big(self, i, ts, size=102400):
        rnd = self.rnd
        h = self.headers(i, ts, self.subject(i))
        if i % 4 == 0:
            att = rnd.randbytes(int((size - 6000) * 3 / 4))
            b64 = base64.encodebytes(att).decode()
            body = ("This is a multi-part message in MIME format.\n\n--mix%d\n"
                    "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
                    "%s\n--mix%d\nContent-Type: application/octet-stream; name=\"report-%d.bin\"\n"
                    "Content-Transfer-Encoding: base64\n"
                    "Content-Disposition: attachment; filename=\"report-%d.bin\"\n\n%s--mix%d--\n"
                    % (i, self.text(3000), i, i, i, b64, i))
            h.append('Content-Type: multipart/mixed; boundary="mix%d"' % i)
        else:
            h.append("Content-Type: text/plain; charset=utf-8")
            body = self.text(size - 1200)
        return ("\n".join(h) + "\n\n" + body).encode()

    def tiny(self, i, ts):
        date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(ts))
        return ("From: %s\nTo: %s@%s\nSubject: message %d\nDate: %s\n"
                "Message-ID: <%d.%s@example.org>\n\nhello %d\n"
                % (self.addr(), self.user, self.domain, i, date, i, self.user, i)).encode()


def parse_specs(args):
    out = []
    for a in args:
        try:
            name, count, kind = a.split(":")
            count = int(count)
        except ValueError:
            die("bad spec %r (NAME:COUNT:KIND)" % a)
        if kind not in ("real", "big", "tiny", "empty"):
            die("bad kind in %r" % a)
        if "-" in name:
            lo, hi = name.split("-")
            p = lo.rstrip("0123456789")
            for k in range(int(lo[len(p):]), int(hi[len(p):]) + 1):
                out.append(("%s%d" % (p, k), count, kind))
        else:
            out.append((name, count, kind))
    return out


def main():
    if len(sys.argv) < 6:
        die("usage: mailgen.py DB TEMPLATE_ID DOMAIN MAILROOT[,MAILROOT...] SPEC...")
    db, template, domain, roots = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
    specs = parse_specs(sys.argv[5:])

    con = sqlite3.connect(db)
    cols = [r[1] for r in con.execute("PRAGMA table_info(users)")]
    row = con.execute("SELECT * FROM users WHERE id = ?", (template,)).fetchone()
    if row is None:
        die("no template user %s in %s" % (template, db))
    row = dict(zip(cols, row))
    uid, gid = int(row["uid"]), int(row["gid"])
    tlocal = template.split("@")[0]
    for name, _, _ in specs:
        addr = "%s@%s" % (name, domain)
        r = dict(row, id=addr, address=addr,
                 maildir=row["maildir"].replace("/%s/" % tlocal, "/%s/" % name))
        con.execute("INSERT OR IGNORE INTO users (%s) VALUES (%s)"
                    % (", ".join(cols), ", ".join("?" * len(cols))), [r[c] for c in cols])
    con.commit()
    maildirs = {name: r[0] for name, r in
                ((n, con.execute("SELECT maildir FROM users WHERE id = ?",
                                 ("%s@%s" % (n, domain),)).fetchone()) for n, _, _ in specs)}
    con.close()

    # the rest as the vmail user: files and directories owned as delivered
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    os.umask(0o077)
    t_start = time.monotonic()
    nfiles = 0
    for name, count, kind in specs:
        dirs = []
        for root in roots:
            md = maildirs[name]
            md = md if md.startswith("/") else os.path.join(root, md)
            for sub in ("", "cur", "new", "tmp"):
                os.makedirs(os.path.join(md, sub), mode=0o700, exist_ok=True)
            dirs.append(md)
        g = Gen(zlib.crc32(("%s:%d:%s" % (name, count, kind)).encode()), domain, name)
        t0 = 1700000000
        for i in range(count):
            ts = t0 + i * 37
            if kind == "real":
                data = g.real(i, ts)
                r = g.rnd.random()
                flags = "S" if r < 0.7 else "RS" if r < 0.8 else "FS" if r < 0.85 else ""
                sub = "new" if i >= count - 20 else "cur"
            elif kind == "big":
                data, flags, sub = g.big(i, ts), "", "cur"
            else:
                data, flags, sub = g.tiny(i, ts), "S", "cur"
            base = "%d.M%dP%d.bench,S=%d" % (ts, i, 4242, len(data))
            fname = base if sub == "new" else base + ":2," + flags
            for md in dirs:
                path = os.path.join(md, sub, fname)
                with open(path, "wb") as f:
                    f.write(data)
                os.utime(path, (ts, ts))
                nfiles += 1
    sys.stderr.write("mailgen: %d users, %d files in %.1f s\n"
                     % (len(specs), nfiles, time.monotonic() - t_start))


if __name__ == "__main__":
    main()
