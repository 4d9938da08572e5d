require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
if anyof (header :contains "Subject" "nope", address :domain "From" "example.com") { fileinto "Any"; }
