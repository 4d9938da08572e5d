require ["fileinto", "reject", "envelope", "copy", "variables", "relational", "comparator-i;ascii-numeric", "subaddress", "imap4flags", "mailbox", "body", "encoded-character"];
# a comment
/* a bracketed
 comment */ if true { fileinto "Commented"; } # tail
