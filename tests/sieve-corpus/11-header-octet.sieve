require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
if header :is :comparator "i;octet" "Subject" "meeting tomorrow" { fileinto "Exact"; } else { fileinto "NotExact"; }
