package report

import "strings"

// The journal keeps an error as its text only, so the hints of a report
// are found in the text: the POP3 response codes of RFC 2449 and RFC 3206
// in brackets, the IMAP response codes of RFC 5530, and the words Go's
// network and file errors use.

// hintRule gives hint to an error text that contains any of words (lower
// case).
type hintRule struct {
	words []string
	hint  string
}

// hintRules are tried in order; the first that matches gives the hint.
var hintRules = []hintRule{
	{[]string{"[in-use]"}, "another mail program had the mailbox open: close it (on the phone too) and run again"},
	{[]string{"[login-delay]"}, "the server limits how often one may log in: run again later"},
	{[]string{"[sys/temp]"}, "a temporary problem of the server: run again later"},
	{[]string{"[sys/perm]"}, "the server reports a lasting problem: ask the mail provider about this mailbox"},
	{[]string{"[auth]", "authentication failed", "invalid credentials", "login refused"}, "the server refused the login: check the user name and the password (or token)"},
	{[]string{"x509:", "certificate"}, "the server's TLS certificate could not be verified: check --ca-file and that the host name is the one in the certificate"},
	{[]string{"no such host"}, "the server's name does not resolve: check the host name of the source"},
	{[]string{"connection refused"}, "nothing answered on that host and port: check the port of the source and the firewall"},
	{[]string{"[overquota]", "quota"}, "the destination mailbox is over its quota: raise it and run again"},
	{[]string{"[toobig]", "too big", "too large", "appendlimit", "[limit]"}, "the destination refuses messages this large: raise its size limit and run again; the message stays on the server"},
	{[]string{"no space left on device", "disk quota exceeded"}, "the destination disk is full: free space and run again"},
	{[]string{"permission denied", "read-only file system"}, "popmigrate may not write there: check the owner and mode of the destination folder"},
	{[]string{"i/o timeout", "deadline exceeded", "timed out", "timeout"}, "the server stopped answering: run again (the run resumes where it stopped), or raise --timeout"},
	{[]string{"connection reset", "broken pipe", "unexpected eof", "connection broken", ": eof"}, "the connection broke: run again; the run resumes where it stopped"},
	{[]string{"-err"}, "the server refused this message: run again; if it keeps failing, ask the mail provider about it"},
}

// suspectHint is the hint of every suspect message.
const suspectHint = "the server delivered a size its listing does not explain, so the copy may be incomplete: it stays on the server; " +
	"compare it by hand (popmigrate purge --delete-suspect deletes it anyway)"

// defaultHint is the hint of a failure no rule knows.
const defaultHint = "run again: each later run tries a failed message once more (--retry-failed gives it all its attempts again)"

// Hint returns what to do about a failure whose error text is text, as
// the journal recorded it; "" for an empty text. A text no rule knows gets
// the advice to run again.
func Hint(text string) string {
	if strings.TrimSpace(text) == "" {
		return ""
	}
	lower := strings.ToLower(text)
	for _, r := range hintRules {
		for _, w := range r.words {
			if strings.Contains(lower, w) {
				return r.hint
			}
		}
	}
	return defaultHint
}

// hasHint reports whether an account error carries popmigrate's hint
// already: the run writes it in parentheses at the end ("... (the server
// refused the credentials: ...)").
func hasHint(text string) bool {
	text = strings.TrimSpace(text)
	i := strings.LastIndex(text, " (")
	return strings.HasSuffix(text, ")") && i > 0 && strings.Contains(text[i:], ": ")
}
