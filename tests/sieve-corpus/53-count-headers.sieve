require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
if header :count "eq" :comparator "i;ascii-numeric" "Received" "2" { fileinto "TwoHops"; }
