require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
if header :value "gt" :comparator "i;ascii-numeric" "X-Priority" "2" { fileinto "LowPrio"; }
