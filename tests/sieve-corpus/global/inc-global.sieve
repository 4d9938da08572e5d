# the global script 67-include reads from sieve_global
require ["fileinto"];
if header :contains "subject" "buy" { fileinto "global-buy"; stop; }
