require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
if header :contains "Subject" "${hex:4d 65}eting" { fileinto "Encoded"; }
