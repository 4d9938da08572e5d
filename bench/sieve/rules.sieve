# bench/sieve/rules.sieve: the 20-rule script of bench/sieve_deliver.sh,
# run for every user by petrel and by Dovecot LDA + Pigeonhole alike.
# Most messages fall through to keep; the list mail is filed.
require ["fileinto", "mailbox", "imap4flags", "envelope", "body",
         "relational", "comparator-i;ascii-numeric"];

# 1-4: mailing lists into their folders
if header :contains "List-Id" "<announce.lists.example.org>" {
    fileinto :create "Lists.Announce"; stop;
}
if header :contains "List-Id" "<dev.lists.example.org>" {
    addflag "$List";
    fileinto :create "Lists.Dev"; stop;
}
if address :is :domain "from" "github.example" {
    fileinto :create "Notifications"; stop;
}
if header :matches "Subject" "[[]JIRA[]]*" {
    fileinto :create "Notifications"; stop;
}
# 5-7: spam markers
if header :is "X-Spam-Flag" "YES" {
    fileinto :create "Junk"; stop;
}
if header :value "ge" :comparator "i;ascii-numeric" "X-Spam-Score" "8" {
    fileinto :create "Junk"; stop;
}
if header :contains "X-Spam-Status" "BAYES_99" {
    fileinto :create "Junk"; stop;
}
# 8-10: envelope tests
if envelope :is "from" "MAILER-DAEMON@bounce.example.net" {
    fileinto :create "Bounces"; stop;
}
if envelope :matches :domain "from" "*.invoices.example" {
    fileinto :create "Billing"; stop;
}
if address :is :localpart "to" "postmaster" {
    fileinto :create "Admin"; stop;
}
# 11-13: people
if address :is "from" ["boss@corp.example", "ceo@corp.example"] {
    addflag "\\Flagged";
}
if header :contains "Subject" ["urgent", "asap"] {
    addflag "\\Flagged";
}
if address :matches "from" "*@family.example" {
    fileinto :create "Family"; stop;
}
# 14-16: automated mail
if exists "Auto-Submitted" {
    if header :is "Auto-Submitted" "no" { keep; } else {
        fileinto :create "Automated"; stop;
    }
}
if header :contains "Precedence" ["bulk", "junk"] {
    fileinto :create "Bulk"; stop;
}
if header :count "gt" :comparator "i;ascii-numeric" "Received" "20" {
    fileinto :create "Junk"; stop;
}
# 17-19: content
if body :contains "unsubscribe from this newsletter" {
    fileinto :create "Newsletters"; stop;
}
if header :matches "Subject" "*Out of office*" {
    discard; stop;
}
if size :over 5M {
    fileinto :create "Large"; stop;
}
# 20: everything else stays in INBOX
keep;
