require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
if address :count "ge" :comparator "i;ascii-numeric" ["To", "Cc"] "2" { fileinto "Many"; }
