require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
if address :domain "From" "example.com" { if header :contains "Subject" "e" { if size :under 100K { fileinto "Deep"; } } }
