# include: personal and global scripts, :once, :optional, global variables
require ["include", "variables", "fileinto"];
global "box";
set "box" "main";
set "mine" "local";
include :personal "inc-sub";
include :once "inc-sub";
include :optional "no-such-script";
include :global "inc-global";
fileinto "after.${box}.${mine}";
