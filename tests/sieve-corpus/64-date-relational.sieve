# relational and comparators over date parts; currentdate
require ["date", "relational", "comparator-i;ascii-numeric", "fileinto"];
if date :value "ge" :comparator "i;ascii-numeric" :originalzone "date" "hour" "20" { fileinto "evening"; }
if date :count "eq" "date" "year" "1" { fileinto "one-date"; }
if date :count "eq" "x-no-such" "year" "0" { fileinto "no-date"; }
if date :value "lt" :zone "+0100" "received" "date" "2024-01-02" { fileinto "early"; }
if currentdate :value "ge" "year" "2024" { fileinto "now"; }
if date :matches "subject" "year" "*" { fileinto "never"; }
