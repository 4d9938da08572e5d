require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
if size :over 405 { fileinto "Over405"; }
if size :under 380 { fileinto "Under380"; }
