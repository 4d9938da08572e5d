"""Roundcube (Debian's roundcube-core) against petrel, driven in headless
Chromium through selenium.

A user with a 1,000-message INBOX (200 threads of 5: a root and a chain of
replies linked by In-Reply-To/References, the threads interleaved in time,
Date headers in assorted time zones, written to the Maildir in a shuffled
order so that UID order is not date order) logs in through Roundcube's
login form. Through the list options dialog the list is sorted by date,
newest first (the first page must be the 50 newest messages by the Date
header, in order, "of 1000"), then switched to threads (the newest thread
must come first with its four replies nested under it, one level deeper
each, and the folder must hold 200 threads), then back to a plain list.
A message is opened in the preview pane (its subject and body shown),
flagged from the Mark menu and moved to another folder from the More menu;
imaplib then checks on the server that it carries \\Flagged and \\Seen,
that it is in the other folder and no longer in INBOX. Roundcube's own IMAP
trace must show that it sent SORT, THREAD REFERENCES and (with
skip_deleted, as many installations set it) ESEARCH counts, and that petrel
answered none of its commands with BAD; Roundcube must log no error.

Every test runs twice: against the server holding the mailbox ("direct"),
and through a frontend (`role = frontend`) that authenticates the user and
proxies the IMAP session to the backend on 127.0.0.2 ("proxied", SPEC 6
scale-out: webmail through the proxy).

Roundcube runs under `php -S` on a free loopback port from its Debian
public directory (/var/lib/roundcube/public_html) with a private config
directory (ROUNDCUBE_CONFIG_DIR: a copy of Debian's defaults.inc.php and a
config.inc.php written here), its own SQLite database, temp and log
directories; no system file is changed and no service is started.

Heavy (a browser and PHP): it runs once, in the plain build's pass of
scripts/test.sh, and is skipped in the sanitizer pass. Needs the Debian
packages roundcube-core, roundcube-sqlite3, php-cli, php-sqlite3, chromium,
chromium-driver and python3-selenium (scripts/install-deps.sh --test); a
missing one fails the test.
"""

import imaplib
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import time

import pytest

from harness import maildir, server
from harness.instance import TIMEOUT_SCALE, make_instance
from harness.ports import free_port
from imap_util import ALICE, PASSWORD, DEFAULTS, ImapServer, add_users

RC_PUBLIC = "/var/lib/roundcube/public_html"
RC_DEFAULTS = "/etc/roundcube/defaults.inc.php"
RC_MIMETYPES = "/etc/roundcube/mimetypes.php"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

WAIT = 60 * TIMEOUT_SCALE       # one page load, one list request, one action
START_WAIT = 30 * TIMEOUT_SCALE

THREADS = 200
PER_THREAD = 5
TOTAL = THREADS * PER_THREAD
PAGE = 50
FOLDER = "Projects"
BASE_TIME = 1767225600          # 2026-01-01 00:00:00 UTC
ZONES = (0, 120, -300, 330, -480, 60, 545, -210)    # minutes east of UTC


def sanitized(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


@pytest.fixture(scope="module", autouse=True)
def once(petrel_bin):
    if sanitized(petrel_bin):
        pytest.skip("webmail run once per CI run, in the plain build's pass")
    for path, pkg in ((RC_PUBLIC + "/index.php", "roundcube-core"),
                      (RC_DEFAULTS, "roundcube-core"),
                      ("/usr/bin/php", "php-cli"),
                      (CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.path.exists(path):
            pytest.fail("%s is missing: apt-get install %s (scripts/install-deps.sh --test)"
                        % (path, pkg))
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is missing: apt-get install python3-selenium "
                    "(scripts/install-deps.sh --test)")


# --------------------------------------------------------------------------
# the mailbox


class Msg:
    """Message `slot` in time order (0 oldest); thread slot % THREADS,
    position slot // THREADS in it (0 the root, then a chain of replies)."""

    def __init__(self, slot):
        self.slot = slot
        self.thread = slot % THREADS
        self.pos = slot // THREADS
        self.when = BASE_TIME + slot * 3600
        if self.pos == 0:
            self.subject = "Topic %03d" % self.thread
        else:
            self.subject = "Re: Topic %03d (reply %d)" % (self.thread, self.pos)
        self.msgid = "<t%03d.%d@webmail.test>" % (self.thread, self.pos)
        self.phrase = "body-of-t%03d-%d-%s" % (self.thread, self.pos, "x" * 8)

    def ref(self, pos):
        return "<t%03d.%d@webmail.test>" % (self.thread, pos)

    def date_header(self):
        zone = ZONES[self.slot % len(ZONES)]
        t = time.gmtime(self.when + zone * 60)
        sign = "+" if zone >= 0 else "-"
        return time.strftime("%a, %d %b %Y %H:%M:%S ", t) + "%s%02d%02d" % (
            sign, abs(zone) // 60, abs(zone) % 60)

    def data(self):
        lines = [
            "From: Sender %03d <s%03d@example.org>" % (self.thread, self.thread),
            "To: Alice <%s>" % ALICE,
            "Subject: " + self.subject,
            "Date: " + self.date_header(),
            "Message-ID: " + self.msgid,
        ]
        if self.pos:
            lines.append("In-Reply-To: " + self.ref(self.pos - 1))
            lines.append("References: " + " ".join(self.ref(p) for p in range(self.pos)))
        lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=us-ascii", "",
                  "Hello Alice,", "", "this is %s." % self.phrase, ""]
        return "\r\n".join(lines).encode()


MSGS = [Msg(s) for s in range(TOTAL)]
BY_SUBJECT = {m.subject: m for m in MSGS}


def fill_inbox(inst):
    """The 1,000 messages into alice's INBOX (new/), in a shuffled order."""
    order = list(MSGS)
    random.Random(17).shuffle(order)
    for m in order:
        maildir.put(inst, ALICE, m.data())


# --------------------------------------------------------------------------
# IMAP checks (imaplib, independent of Roundcube)


def imap_login(srv):
    m = imaplib.IMAP4(srv.host, srv.imap_port, timeout=30 * TIMEOUT_SCALE)
    typ, _ = m.login(ALICE, PASSWORD)
    assert typ == "OK"
    return m


def find(m, folder, msgid):
    """UIDs in folder whose Message-ID is msgid (read-only)."""
    typ, data = m.select(folder, readonly=True)
    assert typ == "OK", (folder, data)
    typ, data = m.uid("SEARCH", "HEADER", "Message-ID", msgid)
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


def flags_of(m, uid):
    typ, data = m.uid("FETCH", str(uid), "(FLAGS)")
    assert typ == "OK" and data and data[0], data
    found = re.search(rb"FLAGS \(([^)]*)\)", data[0])
    assert found, data
    return set(found.group(1).decode().split())


# --------------------------------------------------------------------------
# Roundcube under php -S


def write_config(d, imap_hostport, smtp_hostport):
    conf = os.path.join(d, "config")
    os.makedirs(conf)
    for sub in ("temp", "logs"):
        os.makedirs(os.path.join(d, sub))
    shutil.copy(RC_DEFAULTS, conf)
    if os.path.exists(RC_MIMETYPES):
        shutil.copy(RC_MIMETYPES, conf)
    db = os.path.join(d, "roundcube.db")
    open(db, "w").close()   # empty: Roundcube creates its schema in it
    settings = {
        "db_dsnw": "sqlite:///%s?mode=0600" % db,
        "imap_host": imap_hostport,
        "smtp_host": smtp_hostport,
        "smtp_user": "%u",
        "smtp_pass": "%p",
        "username_domain": "",
        "des_key": secrets.token_hex(12),
        "plugins": [],
        "skin": "elastic",
        "language": "en_US",
        "temp_dir": os.path.join(d, "temp") + "/",
        "log_dir": os.path.join(d, "logs") + "/",
        "log_driver": "file",
        "imap_debug": True,
        "imap_cache": None,
        "messages_cache": False,
        "enable_installer": False,
        "support_url": "",
        "login_rate_limit": 0,
        "refresh_interval": 0,
        "mail_pagesize": PAGE,
        "autoexpand_threads": 1,
        # count and list without messages flagged \Deleted: Roundcube then
        # counts with ESEARCH (SEARCH RETURN (COUNT ...) ALL UNDELETED)
        "skip_deleted": True,
        "mail_read_time": 0,
        "create_default_folders": False,
        "imap_timeout": int(30 * TIMEOUT_SCALE),
    }
    with open(os.path.join(conf, "config.inc.php"), "w") as f:
        f.write("<?php\n$config = array();\n")
        for k, v in settings.items():
            f.write("$config[%s] = %s;\n" % (php(k), php(v)))
    return conf


def php(v):
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "array(%s)" % ", ".join(php(x) for x in v)
    return "'%s'" % str(v).replace("\\", "\\\\").replace("'", "\\'")


def wait_port(port, proc, what, timeout=START_WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("%s exited with status %s" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("%s did not listen on port %d within %ss" % (what, port, timeout))


class Webmail:
    def __init__(self, srv, d, url, driver, proxied=False):
        self.proxied = proxied
        self.srv = srv
        self.dir = d
        self.url = url
        self.driver = driver

    def imap_trace(self):
        p = os.path.join(self.dir, "logs", "imap.log")
        if not os.path.exists(p):
            return ""
        with open(p, encoding="utf-8", errors="replace") as f:
            return f.read()

    def errors_log(self):
        p = os.path.join(self.dir, "logs", "errors.log")
        if not os.path.exists(p):
            return ""
        with open(p, encoding="utf-8", errors="replace") as f:
            return f.read()

    def context(self):
        return ("\n--- Roundcube errors.log (tail) ---\n%s\n--- Roundcube IMAP trace (tail) ---\n%s"
                "\n--- petrel log (tail) ---\n%s"
                % (self.errors_log()[-3000:], self.imap_trace()[-6000:], self.srv.log()[-3000:]))

    # --- browser helpers
    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def until(self, cond, what, timeout=WAIT):
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(cond)
        except TimeoutException:
            pytest.fail("timed out after %ss waiting for %s%s" % (timeout, what, self.context()))

    def until_js(self, expr, what, timeout=WAIT):
        return self.until(lambda d: d.execute_script("try { return %s; } catch (e) { return false; }"
                                                     % expr), what, timeout)

    def visible(self, by, sel, what):
        from selenium.webdriver.support import expected_conditions as EC
        return self.until(EC.element_to_be_clickable((by, sel)), what)

    def mark_lists(self):
        """Count list loads from now on (Roundcube's listupdate event)."""
        self.js("window.__lists = 0; if (!window.__hooked) { window.__hooked = 1;"
                " rcmail.addEventListener('listupdate', function() { window.__lists++; }); }")

    def until_listed(self, what):
        self.until_js("window.__lists > 0 && !rcmail.busy && $.active == 0", what)

    def rows(self):
        """The message list as shown: [(uid, subject, depth)] in row order."""
        return self.js("""
            var out = [];
            $('#messagelist tbody tr').each(function() {
                var uid = rcmail.message_list.get_row_uid(this),
                    row = rcmail.message_list.rows[uid];
                out.push([String(uid), $.trim($(this).find('span.subject').first().text()),
                          row ? row.depth : null]);
            });
            return out;""")

    def list_options(self, sort_col, sort_order, mode):
        """The list options dialog (the list menu link in the list header)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select
        self.mark_lists()
        self.visible(By.CSS_SELECTOR, "#listmenulink", "the list options link").click()
        dialog = "div.ui-dialog:not([style*='display: none']) "
        self.visible(By.CSS_SELECTOR, dialog + "select[name='sort_col']", "the list options dialog")
        d = self.driver
        Select(d.find_element(By.CSS_SELECTOR, dialog + "select[name='sort_col']")).select_by_value(
            sort_col)
        Select(d.find_element(By.CSS_SELECTOR, dialog + "select[name='sort_ord']")).select_by_value(
            sort_order)
        Select(d.find_element(By.CSS_SELECTOR, dialog + "select[name='mode']")).select_by_value(mode)
        self.visible(By.CSS_SELECTOR, dialog + ".ui-dialog-buttonpane button.mainaction",
                     "the dialog's save button").click()
        self.until_listed("the message list after the list options (%s %s, %s)"
                          % (sort_col, sort_order, mode))

    def count_text(self):
        return self.js("return $.trim($('#rcmcountdisplay').text());")


PROXY_SECRET = "webmail-proxy-secret"


@pytest.fixture(scope="module", params=["direct", "proxied"])
def webmail(request, petrel_bin, tmp_path_factory):
    """Roundcube against petrel: "direct" talks to the server holding the
    mailbox; "proxied" to a frontend (role = frontend, SPEC 6 scale-out)
    that authenticates the user and relays the session to the backend
    (127.0.0.2) holding it, the same tests going through the proxy."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    base = tmp_path_factory.mktemp("webmail")
    inst = make_instance(petrel_bin, base / "inst", "sqlite")
    add_users(inst)
    fill_inbox(inst)
    servers = []
    if request.param == "direct":
        srv = server.start(inst, ("imap", "submission"), DEFAULTS, cls=ImapServer)
        servers.append(srv)
        smtp = "127.0.0.1:%d" % srv.sub_port
    else:
        back = server.start(inst, ("imap", "submission"),
                            DEFAULTS + ("role=backend", "proxy_secret=" + PROXY_SECRET,
                                        "proxy_trusted_networks=127.0.0.1"),
                            cls=ImapServer, host="127.0.0.2")
        servers.append(back)
        front_inst = make_instance(petrel_bin, base / "front", "sqlite")
        srv = server.start(front_inst, ("imap",),
                           DEFAULTS + ("role=frontend", "database=sqlite:" + inst.sqlite_path(),
                                       "backend_default=127.0.0.2",
                                       "backend_ports=24,%d,110,4190" % back.imap_port,
                                       "proxy_secret=" + PROXY_SECRET),
                           cls=ImapServer)
        servers.append(srv)
        smtp = "127.0.0.2:%d" % back.sub_port
    procs = []
    driver = None
    try:
        # the move target: an ordinary subscribed folder, made over IMAP
        m = imap_login(srv)
        assert m.create(FOLDER)[0] == "OK"
        assert m.subscribe(FOLDER)[0] == "OK"
        m.logout()

        rc = str(base / "roundcube")
        os.makedirs(rc)
        conf = write_config(rc, "127.0.0.1:%d" % srv.imap_port, smtp)
        port = free_port()
        env = dict(os.environ, ROUNDCUBE_CONFIG_DIR=conf, PHP_CLI_SERVER_WORKERS="4")
        php_log = open(os.path.join(rc, "php-server.log"), "wb")
        procs.append(subprocess.Popen(
            ["php", "-S", "127.0.0.1:%d" % port, "-t", RC_PUBLIC], cwd=rc, env=env,
            stdin=subprocess.DEVNULL, stdout=php_log, stderr=subprocess.STDOUT,
            start_new_session=True))
        wait_port(port, procs[0], "php -S (Roundcube)")

        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-proxy-server", "--window-size=1600,1000", "--lang=en-US",
                  "--user-data-dir=" + os.path.join(rc, "chromium")):
            opts.add_argument(a)
        service = Service(CHROMEDRIVER, log_path=os.path.join(rc, "chromedriver.log"))
        driver = webdriver.Chrome(service=service, options=opts)
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        yield Webmail(srv, rc, "http://127.0.0.1:%d/" % port, driver,
                      proxied=request.param == "proxied")
    finally:
        if driver is not None:
            driver.quit()
        for p in procs:
            os.killpg(p.pid, 15)
            try:
                p.wait(timeout=10 * TIMEOUT_SCALE)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait()
        problems = server.check_stopped(servers)
        if problems:
            raise AssertionError("\n\n".join(problems))


# --------------------------------------------------------------------------
# the tests (in this order: each goes on from where the last one left off)


NEWEST_FIRST = sorted(MSGS, key=lambda m: -m.when)


def test_login_and_date_sorted_list(webmail):
    from selenium.webdriver.common.by import By
    w = webmail
    w.driver.get(w.url)
    w.visible(By.ID, "rcmloginuser", "the login form").send_keys(ALICE)
    w.driver.find_element(By.ID, "rcmloginpwd").send_keys(PASSWORD)
    w.driver.find_element(By.ID, "rcmloginsubmit").click()
    w.until_js("rcmail.task == 'mail' && rcmail.message_list && !rcmail.busy"
               " && rcmail.env.messagecount > 0 && $('#messagelist tbody tr').length > 0",
               "the INBOX message list after logging in")
    assert w.js("return rcmail.env.mailbox;") == "INBOX"
    assert w.js("return rcmail.env.messagecount;") == TOTAL, w.count_text()
    # the folder list's unread count (from ESEARCH COUNT: skip_deleted)
    unread = w.js("return $.trim($('#mailboxlist li.inbox span.unreadcount').first().text());")
    assert unread == str(TOTAL), "INBOX unread count shown: %r" % unread
    # THREAD is advertised: the list options offer the thread mode
    assert w.js("return !!rcmail.env.threads;"), "Roundcube sees no THREAD capability"

    w.list_options("date", "DESC", "list")
    assert w.js("return [rcmail.env.sort_col, rcmail.env.sort_order, rcmail.env.threading];") \
        == ["date", "DESC", 0]
    rows = w.rows()
    want = [m.subject for m in NEWEST_FIRST[:PAGE]]
    got = [s for _, s, _ in rows]
    assert got == want, "first page sorted by date, newest first:\nexpected %r\ngot %r" % (
        want, got)
    assert re.search(r"\b1 to %d of %d\b" % (PAGE, TOTAL), w.count_text()), w.count_text()

    # the listing is not merely UID order: the Maildir was filled shuffled
    uids = [int(u) for u, _, _ in rows]
    assert uids != sorted(uids, reverse=True), "UID order happens to be date order: %r" % uids


def test_threaded_list(webmail):
    w = webmail
    w.list_options("date", "DESC", "threads")
    assert w.js("return rcmail.env.threading;") in (1, True)
    rows = w.rows()
    assert len(rows) >= PER_THREAD + 1, rows
    newest = THREADS - 1
    chain = sorted((m for m in MSGS if m.thread == newest), key=lambda m: m.pos)
    got = [(s, depth) for _, s, depth in rows[:PER_THREAD]]
    want = [(m.subject, m.pos) for m in chain]
    assert got == want, ("the newest thread first, its replies nested one level deeper each:\n"
                         "expected %r\ngot %r" % (want, got))
    assert list(rows[PER_THREAD][1:]) == ["Topic %03d" % (newest - 1), 0], rows[:PER_THREAD + 2]
    # a page of PAGE whole threads (all expanded): each root at depth 0
    # followed by its replies in order, one level deeper each
    assert len(rows) == PAGE * PER_THREAD, len(rows)
    # threads newest first (by root or by latest message: the same here)
    roots = [s for _, s, depth in rows if depth == 0]
    assert roots == ["Topic %03d" % k for k in range(newest, newest - PAGE, -1)], roots
    for i in range(0, len(rows), PER_THREAD):
        group = [(BY_SUBJECT[s], depth) for _, s, depth in rows[i:i + PER_THREAD]]
        assert len({m.thread for m, _ in group}) == 1, rows[i:i + PER_THREAD]
        assert [(m.pos, depth) for m, depth in group] == [(p, p) for p in range(PER_THREAD)], \
            rows[i:i + PER_THREAD]
    assert re.search(r"\bof %d\b" % THREADS, w.count_text()), (
        "1,000 messages in %d threads: %r" % (THREADS, w.count_text()))


def test_open_flag_move(webmail):
    from selenium.webdriver.common.by import By
    w = webmail
    w.list_options("date", "DESC", "list")
    rows = w.rows()
    target = NEWEST_FIRST[2]
    assert rows[2][1] == target.subject, rows[:4]
    uid = rows[2][0]

    # open it in the preview pane
    cell = w.driver.find_element(By.CSS_SELECTOR, "#rcmrow%s td.subject" % w.js(
        "return rcmail.html_identifier(arguments[0], true);", uid))
    cell.click()
    w.until_js("document.getElementById('messagecontframe').contentWindow.location.href"
               ".indexOf('_uid=%s&') >= 0" % uid, "the preview of the clicked message")
    w.driver.switch_to.frame("messagecontframe")
    try:
        w.until_js("document.readyState == 'complete'", "the preview document to load")
        # what the user sees: selenium's .text is the rendered, visible text
        subject = w.visible(By.CSS_SELECTOR, "h2.subject", "the previewed message's subject").text
        body = w.visible(By.ID, "messagebody", "the previewed message's body").text
    finally:
        w.driver.switch_to.default_content()
    assert target.subject in subject, subject
    assert target.phrase in body, body

    m = imap_login(w.srv)
    try:
        found = find(m, "INBOX", target.msgid)
        assert found == [int(uid)], "Roundcube's UID %s is not the server's %r" % (uid, found)
        assert "\\Flagged" not in flags_of(m, found[0])

        # flag it from the Mark menu
        w.visible(By.ID, "markmessagemenulink", "the Mark button").click()
        w.visible(By.CSS_SELECTOR, "#markmessage-menu a.flag.active", "Mark > As flagged").click()
        # the row shows the flag at once; the request to the server is
        # done when no jQuery request is left in flight
        w.until_js("rcmail.message_list.rows['%s'].flagged && !rcmail.busy && $.active == 0"
                   % uid, "the flag request to finish")
        found = find(m, "INBOX", target.msgid)
        flags = flags_of(m, found[0])
        assert {"\\Flagged", "\\Seen"} <= flags, flags

        # move it from More > Move to...
        w.visible(By.ID, "messagemenulink", "the More button").click()
        w.visible(By.CSS_SELECTOR, "#message-menu a.move.active", "More > Move to...").click()
        w.visible(By.XPATH, "//div[@id='folder-selector']//a[span[normalize-space()='%s']]"
                  % FOLDER, "the folder %s in the folder selector" % FOLDER).click()
        w.until_js("!rcmail.message_list.rows['%s'] && !rcmail.busy && $.active == 0" % uid,
                   "the moved message to leave the list")
        assert find(m, "INBOX", target.msgid) == [], "still in INBOX after the move"
        moved = find(m, FOLDER, target.msgid)
        assert len(moved) == 1, moved
        assert {"\\Flagged", "\\Seen"} <= flags_of(m, moved[0])
        typ, data = m.uid("FETCH", str(moved[0]), "(BODY.PEEK[TEXT])")
        assert typ == "OK" and target.phrase.encode() in data[0][1], data
        typ, data = m.status("INBOX", "(MESSAGES)")
        assert typ == "OK" and b"MESSAGES %d" % (TOTAL - 1) in data[0], data
    finally:
        m.logout()


def test_imap_trace(webmail):
    """What Roundcube sent petrel, from its own IMAP trace."""
    trace = webmail.imap_trace()
    assert trace, "no Roundcube IMAP trace (imap_debug)"
    sent = [l.split("C: ", 1)[1] for l in trace.splitlines() if "C: " in l]
    got = [l.split("S: ", 1)[1] for l in trace.splitlines() if "S: " in l]
    assert any(re.match(r"\S+ (UID )?SORT \((REVERSE )?DATE\)", c) for c in sent), \
        "no SORT by DATE in the trace:\n" + "\n".join(sent[-80:])
    assert any(re.match(r"\S+ (UID )?THREAD REFERENCES", c) for c in sent), \
        "no THREAD REFERENCES in the trace:\n" + "\n".join(sent[-80:])
    assert any(re.match(r"\S+ UID SEARCH RETURN \(COUNT", c) for c in sent), \
        "no ESEARCH (SEARCH RETURN (COUNT ...)) in the trace:\n" + "\n".join(sent[-80:])
    assert any(re.match(r"\* ESEARCH \(TAG \"A\d+\"\) UID (MAX %d )?COUNT %d$" % (TOTAL, TOTAL), s)
               for s in got), "no ESEARCH COUNT %d answer" % TOTAL
    assert any(re.match(r"\* (SORT|ESEARCH)", s) for s in got), "no SORT answer"
    assert any(re.match(r"\* THREAD \(", s) for s in got), "no THREAD answer"
    bad = [s for s in got if re.match(r"A\d+ BAD", s)]
    assert not bad, "petrel answered BAD:\n%s\n--- trace ---\n%s" % (
        "\n".join(bad), trace[-6000:])


def test_no_webmail_errors(webmail):
    """Roundcube logged no error (an IMAP failure would be one) and served
    no request with a server error."""
    assert webmail.errors_log() == "", webmail.context()
    with open(os.path.join(webmail.dir, "php-server.log"), encoding="utf-8",
              errors="replace") as f:
        failed = [l for l in f if re.search(r" \[5\d\d\]: ", l)]
    assert not failed, "".join(failed)


def test_sessions_took_their_path(webmail):
    """Proxied: every Roundcube login went through the frontend to the
    backend (the frontend logs the relay, the backend the proxied login);
    direct: no proxy anywhere."""
    log = webmail.srv.log()
    relayed = re.findall(r"imap proxy: user=<%s>, .* to backend 127\.0\.0\.2 port \d+"
                         % re.escape(ALICE), log)
    if webmail.proxied:
        assert relayed, "no proxied session in the frontend's log:\n" + log[-3000:]
    else:
        assert not relayed and "proxy:" not in log, log[-3000:]
