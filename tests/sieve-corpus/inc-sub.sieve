# included by 67-include; alone it files into sub..
require ["include", "variables", "fileinto"];
global "box";
fileinto "sub.${box}.${mine}";
if header :contains "subject" "meeting" { set "box" "meeting"; return; }
set "box" "other";
