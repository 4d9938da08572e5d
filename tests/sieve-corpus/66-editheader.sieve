# editheader: later tests see the changes; Received cannot be deleted
require ["editheader", "fileinto", "variables", "index", "relational", "comparator-i;ascii-numeric"];
addheader "X-Added" "first";
addheader :last "X-Added" "second";
if header :index 1 :is "x-added" "first" { fileinto "added-first"; }
if header :index 1 :last :is "x-added" "second" { fileinto "added-last"; }
deleteheader :index 1 :last "x-added";
if header :count "eq" :comparator "i;ascii-numeric" "x-added" "1" { fileinto "one-left"; }
deleteheader :contains "subject" ["meeting", "Dates"];
if not exists "subject" { fileinto "no-subject"; }
deleteheader "received";
if exists "received" { fileinto "received-kept"; }
deleteheader :matches "to" "*carol*";
if address :is "to" "carol@example.org" { fileinto "carol-still"; }
