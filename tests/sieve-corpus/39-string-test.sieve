require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
set "a" "foo"; if string :is "${a}" "foo" { fileinto "StringFoo"; }
