"""The Python test harness shared by tests/integration, tests/hostile,
tests/reliability and bench/compare/driver.py.

- instance: `petrel init` in a directory, the Instance object (CLI, SQL,
  users), the environment petrel runs in, time bounds.
- ports: free loopback ports, stable ports, local addresses.
- procs: /proc lookups (children, worker pids, RSS, process trees).
- server: Server, one `petrel serve` with any set of listeners on free
  ports; start() waits for every listener to greet; stop/kill, the log read
  on a thread, crashes(); check_stopped() and tracked() for fixtures.
- conn: one bounded line-based connection (LineConn) and its SMTP,
  submission, POP3 and IMAP subclasses, IMAP response parsing.
- maildir: paths, listing and writing messages in maildirs, the queue dir.

The suites put tests/ on sys.path (their conftest does) and import
`harness.<module>`; their own *_util modules re-export what their tests use.
"""
