# index on header and address
require ["index", "fileinto", "variables"];
if header :index 2 :matches "received" "from * by *;*" { fileinto "second.${1}"; }
if header :index 1 :last :contains "received" "c.example.com" { fileinto "last"; }
if address :index 2 :domain :is "to" "example.org" { fileinto "to2"; }
if address :index 1 :last :localpart :is "to" "carol" { fileinto "to-last"; }
if header :index 3 :matches "received" "*" { fileinto "never"; }
