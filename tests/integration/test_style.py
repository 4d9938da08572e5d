"""House rules that a grep can enforce (STYLE.md): no unbounded string
functions in the C sources, and every C file opens with a header comment."""
import os
import re

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SRC_DIRS = ("lib", "cli", "master", "smtp", "imap", "pop3", "queue")
BANNED = re.compile(r"\b(strcpy|strcat|sprintf|vsprintf|gets)\s*\(")


def c_sources():
    yield os.path.join(REPO, "main.c")
    for d in SRC_DIRS:
        for root, _, files in os.walk(os.path.join(REPO, d)):
            for f in files:
                if f.endswith((".c", ".h")):
                    yield os.path.join(root, f)


def test_no_unbounded_string_functions():
    hits = []
    for path in c_sources():
        with open(path, encoding="utf-8") as fp:
            for n, line in enumerate(fp, 1):
                if BANNED.search(line):
                    hits.append("%s:%d: %s" % (os.path.relpath(path, REPO), n, line.strip()))
    assert not hits, "banned functions:\n" + "\n".join(hits)


def test_c_files_open_with_a_comment():
    missing = []
    for path in c_sources():
        if not path.endswith(".c"):
            continue
        with open(path, encoding="utf-8") as fp:
            head = fp.read(200).lstrip()
        if not head.startswith("/*"):
            missing.append(os.path.relpath(path, REPO))
    assert not missing, "no header comment: " + ", ".join(missing)
