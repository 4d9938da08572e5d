require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
if allof (header :contains "From" "alice", size :under 10M) { fileinto "Both"; }
