"""The fuzz targets (fuzz/fuzz_*.c) over their corpora (fuzz/corpus/<name>/),
through the plain driver the build links them with: every input found by a
fuzzing run and kept in the corpus stays a regression test. In the ASan
build this catches memory errors on those inputs."""
import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.path.abspath(os.environ.get("PETREL_BUILD_DIR") or os.path.join(REPO, "build"))
TARGETS = ("mime", "imap_parse", "config", "maildir_name", "smtp_parse", "smtp_reply", "base64",
           "queue_file", "imap_framing", "authd_proto", "sasl", "pop3_cmd",
           "addr_route", "mx_answer", "mbox_index", "quota",
           "session_line", "route", "mailbox_files", "imap_sort",
           "legacy_files", "http", "milter_reply", "sieve_parse", "sieve_run", "trust_fields",
           "managesieve_cmd", "mta_sts", "tlsrpt")


@pytest.mark.parametrize("name", TARGETS)
def test_corpus(name):
    binary = os.path.join(BUILD, "fuzz", "fuzz_" + name)
    corpus = os.path.join(REPO, "fuzz", "corpus", name)
    assert os.access(binary, os.X_OK), "not built: " + binary
    files = os.listdir(corpus)
    assert len(files) >= 5, "corpus too small: " + corpus
    cp = subprocess.run([binary, corpus], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True, errors="replace", timeout=300)
    assert cp.returncode == 0, cp.stdout
    assert "%d inputs run" % len(files) in cp.stdout, cp.stdout
    assert "ERROR: AddressSanitizer" not in cp.stdout and "runtime error" not in cp.stdout, cp.stdout
