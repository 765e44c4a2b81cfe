// Package adopt reads the state other POP3 clients keep of the messages
// they fetched and left on the server (mpop's UIDLs file, getmail's
// oldmail files, fetchmail's idfile), so that popmigrate can take a
// mailbox over from them without downloading those messages again
// (popmigrate journal import, journal.Adopt).
//
// Each format is a few lines of text, read here by hand: no library reads
// them, and each parser follows the code of the client that writes the
// file (the reference is in the parser's doc comment). The parsers accept
// what the client writes and reads, refuse what it would refuse, and are
// stricter where a lenient reading could make popmigrate skip a message
// that was never fetched: a line cut short, a line that does not parse.
// Every leniency is marked QUIRK and has a test named after it.
//
// Parse never panics on any input, bounds every line (MaxLine) and holds
// nothing but the UIDLs in memory. Its errors are a *FormatError naming
// the file, the line and what to do; Select's a *SelectError naming the
// mailboxes the file holds.
package adopt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The POP3 clients whose state Parse reads.
const (
	Getmail   = "getmail"   // getmail 6 (getmail6): an oldmail-SERVER-PORT-USER file
	Mpop      = "mpop"      // mpop: its uidls_file
	Fetchmail = "fetchmail" // fetchmail: its idfile (~/.fetchids)
)

// Tools lists the clients Parse reads, in the order help texts name them.
var Tools = []string{Getmail, Mpop, Fetchmail}

// MaxLine is the longest line Parse accepts, its line end not counted:
// mpop's own bound (UIDLS_LINEBUFSIZE - 1 in src/uidls.c). The other
// clients write far shorter lines; a longer one is not a state file.
const MaxLine = 8191

// ErrUnknownTool is returned by Parse for a tool it does not read.
var ErrUnknownTool = errors.New("adopt: unknown tool")

// Mailbox is what a state file holds for one mailbox.
type Mailbox struct {
	// User and Host name the mailbox as the client's configuration did
	// (the login name and the server host). Both are empty for getmail,
	// whose file holds one mailbox and names it in its file name only.
	User, Host string
	// Line is the line of the file where the mailbox's entries begin.
	Line int
	// UIDLs are the mailbox's UIDLs in the order of the file, each once.
	UIDLs []string
}

// String returns the mailbox as "USER@HOST", or "the mailbox" when the
// file does not name it.
func (m *Mailbox) String() string {
	if m.User == "" && m.Host == "" {
		return "the mailbox"
	}
	return m.User + "@" + m.Host
}

// State is a parsed state file.
type State struct {
	// Tool is the client that wrote it (Getmail, Mpop or Fetchmail).
	Tool string
	// File is the file's name as given to Parse.
	File string
	// Mailboxes are the mailboxes the file holds, in the order of the
	// file. A getmail file holds exactly one; the others may hold none.
	Mailboxes []Mailbox
}

// Parse reads the state file of tool (Getmail, Mpop or Fetchmail) from r.
// file names it in errors and, for getmail, is the name Select checks
// against the mailbox. A file that does not parse is a *FormatError; an
// unknown tool wraps ErrUnknownTool; a read error is wrapped with the
// file's name. Parse reads r to its end or to the first error.
func Parse(tool, file string, r io.Reader) (*State, error) {
	lr := &lineReader{r: bufio.NewReaderSize(r, MaxLine+2), tool: tool, file: file}
	var (
		st  *State
		err error
	)
	switch tool {
	case Mpop:
		st, err = parseMpop(lr)
	case Getmail:
		st, err = parseGetmail(lr)
	case Fetchmail:
		st, err = parseFetchmail(lr)
	default:
		return nil, fmt.Errorf("%w %q (want one of %s)", ErrUnknownTool, tool, strings.Join(Tools, ", "))
	}
	if err != nil {
		return nil, err
	}
	st.Tool, st.File = tool, file
	return st, nil
}

// FormatError is a state file that is not in the format its client
// writes, or that looks cut short.
type FormatError struct {
	Tool, File string
	// Line is the 1-based line number of the problem, 0 for the file as
	// a whole.
	Line int
	// Problem says what is wrong; Hint what to do about it.
	Problem, Hint string
}

func (e *FormatError) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s, line %d", e.File, e.Line)
	}
	return fmt.Sprintf("%s state file %s: %s; %s", e.Tool, where, e.Problem, e.Hint)
}

// hintNotState is the hint of a file that does not parse at all.
const hintNotState = "is it the right file? Its client never writes this: give the file it writes (see popmigrate journal import --help), untouched"

// SelectError is returned by Select when the file holds no mailbox of
// the user at the host, or more than one.
type SelectError struct {
	Tool, File string
	// User and Host are the mailbox that was asked for.
	User, Host string
	// Found are the mailboxes the file holds ("USER@HOST"); for
	// Ambiguous, the ones that match.
	Found []string
	// Ambiguous says that more than one mailbox matches.
	Ambiguous bool
	// Detail says more (getmail: what the file name says); may be "".
	Detail string
}

func (e *SelectError) Error() string {
	want := e.User + "@" + e.Host
	var b strings.Builder
	switch {
	case e.Ambiguous:
		fmt.Fprintf(&b, "%s state file %s holds several mailboxes that match %s: %s; name one exactly as %s's configuration does (user and host, as the file spells them)",
			e.Tool, e.File, want, strings.Join(e.Found, ", "), e.Tool)
	case e.Detail != "":
		fmt.Fprintf(&b, "%s state file %s does not belong to %s: %s", e.Tool, e.File, want, e.Detail)
	case len(e.Found) == 0:
		fmt.Fprintf(&b, "%s state file %s holds no UIDLs of %s, nor of any other mailbox (%s keeps none for a mailbox it left no message of on the server): nothing to import",
			e.Tool, e.File, want, e.Tool)
	default:
		fmt.Fprintf(&b, "%s state file %s holds no UIDLs of %s; it holds those of: %s. Name the mailbox as %s's configuration does (its user and host, as the file spells them)",
			e.Tool, e.File, want, strings.Join(e.Found, ", "), e.Tool)
	}
	return b.String()
}

// Select returns the mailbox of user at host. Hosts are compared without
// regard to case (they are DNS names); users as the client compares them:
// exactly for mpop, without regard to case for fetchmail. When several
// mailboxes match, the one whose user and host are spelled exactly so is
// chosen; when none or several are, Select returns a *SelectError listing
// them.
//
// A getmail file holds one mailbox, named in its file name
// (oldmail-SERVER-PORT-USER, see ParseGetmail): Select returns it unless
// the file name is such a name for another server or user. A file that
// was renamed to something else is taken as the user says.
func (s *State) Select(user, host string) (*Mailbox, error) {
	if s.Tool == Getmail {
		if detail := getmailNameMismatch(s.File, user, host); detail != "" {
			return nil, &SelectError{Tool: s.Tool, File: s.File, User: user, Host: host, Detail: detail}
		}
		return &s.Mailboxes[0], nil
	}
	var matches, exact []*Mailbox
	for i := range s.Mailboxes {
		m := &s.Mailboxes[i]
		userMatches := m.User == user || (s.Tool == Fetchmail && strings.EqualFold(m.User, user))
		if userMatches && strings.EqualFold(m.Host, host) {
			matches = append(matches, m)
			if m.User == user && m.Host == host {
				exact = append(exact, m)
			}
		}
	}
	switch {
	case len(matches) == 1:
		return matches[0], nil
	case len(exact) == 1:
		return exact[0], nil
	}
	e := &SelectError{Tool: s.Tool, File: s.File, User: user, Host: host}
	if len(matches) > 1 {
		e.Ambiguous = true
		for _, m := range matches {
			e.Found = append(e.Found, fmt.Sprintf("%s (line %d)", m, m.Line))
		}
		return nil, e
	}
	for i := range s.Mailboxes {
		e.Found = append(e.Found, s.Mailboxes[i].String())
	}
	return nil, e
}

// lineReader reads a state file line by line, each at most MaxLine bytes.
type lineReader struct {
	r          *bufio.Reader
	tool, file string
	n          int // the number of the last line read
}

// next returns the next line without its line end, and whether it ended
// with one (only the last line of a file may not); io.EOF after the last
// line. QUIRK: a CRLF line end counts as LF (a file that went through a
// Windows editor or transfer). None of these clients writes a CR into a
// line, and no UIDL may hold one (RFC 1939 section 7): any other CR is
// refused.
func (lr *lineReader) next() (line string, ended bool, err error) {
	b, err := lr.r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		lr.n++
		return "", false, lr.errorf("line longer than %d bytes", MaxLine)
	case errors.Is(err, io.EOF) && len(b) == 0:
		return "", false, io.EOF
	case err != nil && !errors.Is(err, io.EOF):
		return "", false, fmt.Errorf("%s state file %s: %w", lr.tool, lr.file, err)
	}
	lr.n++
	ended = err == nil
	if ended {
		b = b[:len(b)-1]
		b = bytes.TrimSuffix(b, []byte("\r"))
	}
	if len(b) > MaxLine {
		return "", false, lr.errorf("line longer than %d bytes", MaxLine)
	}
	if bytes.IndexByte(b, '\r') >= 0 {
		// Not in a UIDL, and a line holding one could not be told
		// from one whose line end it ends.
		return "", false, lr.errorf("a carriage return (CR) inside the line")
	}
	return string(b), ended, nil
}

// errorf returns a *FormatError about the last line read, with the hint
// that the file is not a state file of the tool.
func (lr *lineReader) errorf(format string, args ...any) *FormatError {
	return &FormatError{Tool: lr.tool, File: lr.file, Line: lr.n, Problem: fmt.Sprintf(format, args...), Hint: hintNotState}
}

// cutShort returns the error of a last line without its line end, which
// the tool always writes: the file may have been cut short, and the line's
// UIDL with it, which could then name another message.
func (lr *lineReader) cutShort() *FormatError {
	return &FormatError{Tool: lr.tool, File: lr.file, Line: lr.n,
		Problem: "the last line has no line end: the file may have been cut short (a full disk, a copy that stopped)",
		Hint:    "run " + lr.tool + " once to rewrite the file, or take it from a backup; if the line is whole, end it with a line break"}
}

// uidlSet collects a mailbox's UIDLs in order, each once.
type uidlSet struct {
	seen  map[string]bool
	uidls []string
}

func (s *uidlSet) add(u string) {
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	if !s.seen[u] {
		s.seen[u] = true
		s.uidls = append(s.uidls, u)
	}
}
