"""Maildirs and the queue directory of an instance: paths, listings,
messages written the Maildir way, the trace fields petrel prepends."""

import os
import shutil
import time


def maildir_of(inst, address):
    local, domain = address.lower().split("@")
    return os.path.join(inst.mail_root, domain, local)


def listdir(path):
    """Sorted names in path without dot files; [] if it does not exist."""
    try:
        return sorted(n for n in os.listdir(path) if not n.startswith("."))
    except FileNotFoundError:
        return []


def folder_dir(inst, address, folder="INBOX"):
    """The directory of a folder: the maildir for INBOX, else maildir/.Name
    (Maildir++, '.' as separator)."""
    md = maildir_of(inst, address)
    if folder.upper() == "INBOX":
        return md
    return os.path.join(md, "." + folder)


def make_folder(inst, address, folder="INBOX"):
    """The folder's tmp/ new/ cur/ (and the maildir's), owned like the maildir."""
    d = folder_dir(inst, address, folder)
    md = maildir_of(inst, address)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    if d != md:
        open(os.path.join(d, "maildirfolder"), "a").close()
    st = os.stat(md)
    for p in [d] + [os.path.join(d, sub) for sub in ("tmp", "new", "cur", "maildirfolder")]:
        if os.path.exists(p):
            os.chown(p, st.st_uid, st.st_gid)
    return d


_seq = [0]


def unique_name(prefix=None, suffix="test"):
    """A Maildir-style unique file name."""
    _seq[0] += 1
    t = prefix if prefix is not None else int(time.time())
    return "%s.M%dP%dQ%d.%s" % (t, _seq[0], os.getpid(), _seq[0], suffix)


def put(inst, address, data, folder="INBOX", sub="new", name=None, info=None, mtime=None):
    """Write data (bytes) as a message file into a folder of the user's
    maildir the Maildir way (tmp/ then rename), owned like the maildir.
    info: the part after ':' in the name. mtime: seconds since the epoch.
    Returns the file name."""
    d = make_folder(inst, address, folder)
    name = name or unique_name()
    if info is not None:
        name = name + ":" + info
    st = os.stat(d)
    tmp = os.path.join(d, "tmp", name.replace(":", "_"))
    with open(tmp, "wb") as f:
        f.write(data)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, 0o600)
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    os.rename(tmp, os.path.join(d, sub, name))
    return name


def reset_maildirs(inst):
    """Remove everything inside every maildir under mail_root (messages,
    folders, indexes, locks, maildirsize), keeping empty new/ cur/ tmp/."""
    root = inst.mail_root
    for dom in listdir(root):
        for user in listdir(os.path.join(root, dom)):
            md = os.path.join(root, dom, user)
            if not os.path.isdir(md):
                continue
            for entry in os.listdir(md):
                p = os.path.join(md, entry)
                if os.path.isdir(p) and not os.path.islink(p):
                    if entry in ("new", "cur", "tmp"):
                        for f in os.listdir(p):
                            fp = os.path.join(p, f)
                            if os.path.isdir(fp):
                                shutil.rmtree(fp)
                            else:
                                os.unlink(fp)
                    else:
                        shutil.rmtree(p)
                else:
                    os.unlink(p)


def tree(path):
    """Every path under path (relative), for 'nothing created outside' checks."""
    out = set()
    for root, dirs, fs in os.walk(path):
        for x in dirs + fs:
            out.add(os.path.relpath(os.path.join(root, x), path))
    return out


def all_delivered(inst):
    """Every file under mail_root/*/*/{new,cur,tmp} (any mailbox)."""
    found = []
    for root, dirs, files in os.walk(inst.mail_root):
        if os.path.basename(root) in ("new", "cur", "tmp"):
            found += [os.path.join(root, f) for f in files]
    return found


def queue_dir(inst):
    q = inst.config().get("queue_dir") or os.path.join(inst.dir, "queue")
    return q if os.path.isabs(q) else os.path.join(inst.dir, q)


def queue_files(inst, sub="incoming"):
    d = os.path.join(queue_dir(inst), sub)
    return [os.path.join(d, n) for n in listdir(d)]


def split_stored(data):
    """A delivered file -> (dict of the prepended headers, the rest).
    The first three header fields must be Return-Path, Delivered-To and a
    (folded) Received, in that order; petrel's own Authentication-Results
    (SPF/DKIM, SMTP mail) follows when checks ran, and is taken too."""
    lines = data.split(b"\n")
    assert lines[0].startswith(b"Return-Path: <") and lines[0].endswith(b">"), data[:300]
    assert lines[1].startswith(b"Delivered-To: "), data[:300]
    assert lines[2].startswith(b"Received: "), data[:300]
    i = 3
    received = [lines[2]]
    while i < len(lines) and lines[i][:1] in (b"\t", b" "):
        received.append(lines[i])
        i += 1
    head = {
        "Return-Path": lines[0][len(b"Return-Path: "):].decode("utf-8", "replace"),
        "Delivered-To": lines[1][len(b"Delivered-To: "):].decode("utf-8", "replace"),
        "Received": b"\n".join(received).decode("utf-8", "replace"),
    }
    if i < len(lines) and lines[i].startswith(b"Authentication-Results: "):
        ar = [lines[i]]
        i += 1
        while i < len(lines) and lines[i][:1] in (b"\t", b" "):
            ar.append(lines[i])
            i += 1
        head["Authentication-Results"] = b"\n".join(ar).decode("utf-8", "replace")
    return head, b"\n".join(lines[i:])
