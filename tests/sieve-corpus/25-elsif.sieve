require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
if header :contains "Subject" "x-nothing" { fileinto "A"; } elsif header :contains "Subject" "e" { fileinto "B"; } else { fileinto "C"; }
