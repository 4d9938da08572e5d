require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
if envelope :domain "to" "example.net" { fileinto "EnvTo"; }
