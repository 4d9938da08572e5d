require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
redirect "a@example.net"; redirect "b@example.net"; redirect "a@example.net";
