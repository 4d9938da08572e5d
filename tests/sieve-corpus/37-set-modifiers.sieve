require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
set :upper "x" "abc"; set :lowerfirst "y" "XYZ"; fileinto "${x}-${y}";
