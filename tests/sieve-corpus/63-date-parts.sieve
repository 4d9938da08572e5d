# date parts in the field's own zone and in a given one
require ["date", "variables", "fileinto"];
if date :originalzone :matches "date" "iso8601" "*" { fileinto "iso.${0}"; }
if date :zone "+0530" :matches "date" "std11" "*" { fileinto "std11.${0}"; }
if date :zone "-0700" :matches "received" "julian" "*" { fileinto "mjd.${0}"; }
if date :originalzone :is "date" "weekday" "1" { fileinto "monday"; }
if date :zone "+0000" :matches "date" "time" "*" { fileinto "utc.${0}"; }
