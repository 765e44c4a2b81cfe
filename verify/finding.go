// Package verify reads back what popmigrate stored and compares it with
// what the journal (or a manifest) says was stored: every copy in every
// destination is opened, hashed in its canonical form (sha256 over the
// message with CRLF turned into LF, see exporters.Canonicalize) and
// checked against the recorded sha256 and size; destinations that can
// enumerate what they hold (exporters.Lister) are searched for messages the
// journal does not know; and, when given the server's listing, messages
// that are on the server but not stored, or stored but gone from the
// server, are reported.
//
// The outcome is a Result of typed Findings, one per problem or note, with
// counts per Kind: the model is `restic check` and `rclone check`. Account
// also records every matching copy as verified in the journal; a copy that
// does not match is never marked verified.
//
// A manifest (WriteManifest, VerifyManifest) is the journal's record of an
// account as a JSON Lines file, for archives that must be re-verified
// years later without the journal.
//
// # Manifest format
//
// A manifest is a JSON Lines file (one JSON object per line, each line
// ending with LF) describing one account's stored messages. It has one
// message line per message that the journal records in at least one
// destination, sorted by UIDL (byte order, no UIDL twice):
//
//	{"uidl":"...","size":N,"sha256":"HEX","destinations":[{"id":"...","ref":"..."}],
//	 "first_seen":TIME,"stored_at":TIME,"verified_at":TIME}
//
// (on one line). size is the message's size as received from the server
// (after dot-unstuffing, with the server's line ends, usually CRLF);
// sha256 is over the canonical form (CRLF turned into LF: the bytes the
// files hold). destinations are sorted by id. Times are RFC 3339 in UTC
// with nanoseconds, or null for "not yet" (stored_at is null for a message
// not yet stored in every destination).
//
// Then one summary line ends the file:
//
//	{"summary":true,"account":"...","count":N,"root":"HEX"}
//
// count is the number of message lines, and root is
//
//	sha256( sha256(line 1) || sha256(line 2) || ... || sha256(line N) )
//
// where line i is the exact bytes of the i-th message line, its final LF
// included, and || joins the 32-byte digests. An empty account has root
// sha256 of nothing. Any change to a message line (an edit, a line added,
// removed or moved) changes root; the summary line is not covered by root
// and is checked against the message lines instead.
package verify

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is the kind of a Finding.
type Kind string

const (
	// Match: the copy read back has the recorded sha256 and size.
	Match Kind = "match"
	// Missing: the journal (or manifest) records the copy, the
	// destination does not hold it.
	Missing Kind = "missing"
	// Extra: the destination holds a message the journal (or manifest)
	// does not record there, or a second copy of one it does.
	Extra Kind = "extra"
	// Checksum: the copy's sha256 is not the recorded one.
	Checksum Kind = "checksum"
	// Size: the copy's length cannot be that of the recorded message: it
	// was cut short or grew.
	Size Kind = "size"
	// Unreadable: the copy, or the whole destination, could not be read.
	Unreadable Kind = "unreadable"
	// GoneFromServer: the journal records the message as stored, and the
	// server no longer lists it. A note, not a problem: mail is deleted
	// on the server by its users too.
	GoneFromServer Kind = "gone-from-server"
	// NotStored: the server lists the message and the journal records no
	// copy of it in a destination.
	NotStored Kind = "not-stored"
	// Suspect: the journal marks the message suspect: RETR delivered a
	// size that its LIST size does not explain, so its stored copies may
	// be incomplete. A note, not a problem (the copies match what was
	// received); it keeps the message on the server.
	Suspect Kind = "suspect"
	// Manifest: the manifest itself is damaged or was changed: a line
	// that does not parse, lines out of order, a count or root that does
	// not match the lines.
	Manifest Kind = "manifest"
)

// Kinds lists every Kind, in the order reports give their counts.
var Kinds = []Kind{Match, Missing, Extra, Checksum, Size, Unreadable, NotStored, Manifest, GoneFromServer, Suspect}

// Finding is one problem or note about one copy of one message (or about a
// destination or a manifest as a whole, with UIDL empty).
type Finding struct {
	Kind    Kind   `json:"kind"`
	Account string `json:"account"`
	// UIDL is the message's key in the journal: the server's UIDL, a
	// disambiguated duplicate or a synthetic key. Empty when the finding
	// is about no message in particular, or about a message whose UIDL
	// is unknown (an extra file).
	UIDL string `json:"uidl,omitempty"`
	// DestID is the destination's id; empty for findings about the server
	// or the manifest.
	DestID string `json:"dest,omitempty"`
	// Ref is the destination's reference to the copy, as the journal,
	// the manifest or the destination's listing has it.
	Ref string `json:"ref,omitempty"`
	// Want and Got are the expected and found values: sha256 digests for
	// Checksum, byte counts for Size, counts or roots for Manifest.
	Want string `json:"want,omitempty"`
	Got  string `json:"got,omitempty"`
	// Detail says more, in words: an error, a journal state.
	Detail string `json:"detail,omitempty"`
	// Hint says what to do about it. Result.Add fills in the Kind's
	// default hint when it is empty.
	Hint string `json:"hint,omitempty"`
}

// Problem reports whether f is a problem: every Kind except Match and
// the notes GoneFromServer and Suspect.
func (f Finding) Problem() bool {
	return f.Kind != Match && f.Kind != GoneFromServer && f.Kind != Suspect
}

// defaultHint returns what a user can do about a finding of kind k.
func defaultHint(k Kind) string {
	switch k {
	case Missing:
		return "the copy was deleted or moved out of the destination; the journal still records it, so run will not store it again: restore it from a backup or from another destination"
	case Extra:
		return "the destination holds a message popmigrate did not record there: a run interrupted between writing and recording (the next run records it), a copy made by hand, or a second copy that can be removed"
	case Checksum:
		return "the stored copy was changed after it was written: restore it from a backup or from another destination, and look for what modifies the destination"
	case Size:
		return "the stored copy was cut short or grew after it was written (a full disk, a crash of the file system, an edit): restore it from a backup or from another destination"
	case Unreadable:
		return "check the destination's permissions, that it is mounted, and that no other program is writing it"
	case NotStored:
		return "run popmigrate run again: it stores what the journal does not hold"
	case Manifest:
		return "the manifest file was changed, cut or damaged since it was written: compare it with a saved copy, or write a new one from the journal with popmigrate manifest"
	case GoneFromServer:
		return "nothing to do unless the message should still be on the server: its stored copies are checked separately"
	case Suspect:
		return "the message stays on the server: fetch it with another client to compare, or delete it with --delete-suspect once you accept the stored copy"
	}
	return ""
}

// Sigil returns the character that starts f's line in a text report, as
// rclone check prints them: "-" missing here (Missing, NotStored), "+"
// only here (Extra), "*" differs (Checksum, Size) or a note
// (GoneFromServer, Suspect), "!" an error (Unreadable, Manifest), "=" a match.
func (f Finding) Sigil() string {
	switch f.Kind {
	case Match:
		return "="
	case Missing, NotStored:
		return "-"
	case Extra:
		return "+"
	case Checksum, Size, GoneFromServer, Suspect:
		return "*"
	}
	return "!"
}

// String returns f as one line of a text report, without a line end:
//
//	SIGIL ACCOUNT UIDL DEST WHAT
//
// with "?" for an empty UIDL or DEST. Values that hold spaces, control
// characters or non-ASCII bytes (UIDLs come from the server) are quoted
// in Go syntax, so that a line never spans two and never carries terminal
// escapes.
func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(f.Sigil())
	for _, v := range []string{f.Account, f.UIDL, f.DestID} {
		b.WriteByte(' ')
		b.WriteString(quote(v))
	}
	b.WriteByte(' ')
	switch f.Kind {
	case Match:
		b.WriteString("match")
	case Missing:
		b.WriteString("missing")
	case Extra:
		b.WriteString("extra")
	case Checksum:
		fmt.Fprintf(&b, "checksum differs (want %s got %s)", f.Want, f.Got)
	case Size:
		fmt.Fprintf(&b, "size differs (received %s bytes, holds %s)", f.Want, f.Got)
	case Unreadable:
		b.WriteString("unreadable")
	case NotStored:
		b.WriteString("not stored")
	case GoneFromServer:
		b.WriteString("gone from the server (note)")
	case Suspect:
		b.WriteString("suspect, kept on the server (note)")
	case Manifest:
		b.WriteString("manifest")
		if f.Want != "" || f.Got != "" {
			fmt.Fprintf(&b, " (want %s got %s)", f.Want, f.Got)
		}
	default:
		b.WriteString(quote(string(f.Kind)))
	}
	if f.Ref != "" && f.Kind != Checksum {
		b.WriteString(" at ")
		b.WriteString(quote(f.Ref))
	}
	if f.Detail != "" {
		b.WriteString(": ")
		b.WriteString(clean(f.Detail))
	}
	return b.String()
}

// quote returns s as it is when it is printable ASCII without spaces, "?"
// when it is empty, and s quoted in Go syntax otherwise.
func quote(s string) string {
	if s == "" {
		return "?"
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' {
			return strconv.Quote(s)
		}
	}
	return s
}

// clean makes free text safe for one line of a terminal: control
// characters become escapes.
func clean(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			q := strconv.Quote(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

// Result is the outcome of verifying one account, or one manifest.
type Result struct {
	// Account is the account verified.
	Account string `json:"account"`
	// Findings are the problems and notes, in the order they were found;
	// matches are only counted.
	Findings []Finding `json:"findings"`
	// Counts counts findings by Kind, matches included.
	Counts map[Kind]int `json:"counts"`
	// Checked is how many copies were read back.
	Checked int `json:"checked"`
	// Error is why the account could not be verified completely (a
	// server that could not be reached), set by callers such as the
	// pipeline; "" when it was.
	Error string `json:"error,omitempty"`
}

// NewResult returns an empty Result for account.
func NewResult(account string) *Result {
	return &Result{Account: account, Findings: []Finding{}, Counts: map[Kind]int{}}
}

// Add counts f and, unless it is a Match, appends it to Findings with the
// Kind's default hint when f has none. An empty f.Account becomes the
// Result's.
func (r *Result) Add(f Finding) {
	if r.Counts == nil {
		r.Counts = map[Kind]int{}
	}
	r.Counts[f.Kind]++
	if f.Kind == Match {
		return
	}
	if f.Account == "" {
		f.Account = r.Account
	}
	if f.Hint == "" {
		f.Hint = defaultHint(f.Kind)
	}
	r.Findings = append(r.Findings, f)
}

// Problems returns how many findings are problems (see Finding.Problem).
func (r *Result) Problems() int {
	n := 0
	for k, c := range r.Counts {
		if (Finding{Kind: k}).Problem() {
			n += c
		}
	}
	return n
}

// OK reports whether the account was verified completely and whole: no
// problem and no Error.
func (r *Result) OK() bool { return r.Error == "" && r.Problems() == 0 }
