require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
if size :over 500 { fileinto "Over500"; } elsif size :under 200 { fileinto "Under200"; }
