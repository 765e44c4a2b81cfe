package adopt

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// parseGetmail reads one of getmail's oldmail files, the state of one
// POP3 mailbox, in the format of getmail 6's getmailcore/_retrieverbases.py
// (RetrieverSkeleton.read_oldmailfile and write_oldmailfile, getmail6
// 6.18): one line per message getmail retrieved and left on the server,
//
//	UIDL NUL TIMESTAMP LF
//
// the UIDL, a NUL byte, and the unix time getmail first retrieved it, in
// no particular order. getmail names the file
// oldmail-SERVER-PORT-USERNAME in its getmail directory (~/.getmail by
// default), each run of the characters / : ; < > | in that name replaced
// by '-' (see Select). A mailbox that getmail left nothing of on the
// server has an empty file.
//
// QUIRK: as getmail does, each line is stripped of white space at both
// ends and blank lines are skipped (getmail writes os.linesep, CRLF on
// Windows). getmail skips a line without NUL, or whose timestamp is not a
// number, as malformed; popmigrate refuses the file instead, naming the
// line, since it cannot tell what the line meant.
//
// getmail stores a UIDL with every '/' in it replaced by '-' (to tell a
// POP3 file from an IMAP one), so such a message is not recognised on the
// server and is downloaded again: a second copy, never a lost one. An id
// holding '/' is an IMAP message's (getmail's IMAP retrievers keep
// UIDVALIDITY/UID in oldmail-SERVER-PORT-USERNAME-FOLDER): such a file is
// refused, popmigrate imports POP3 state only. An empty UIDL is refused.
// getmail's BrokenUIDLPOP3Retriever keeps message numbers in the file, not
// UIDLs; they look like the numeric UIDLs some servers use, so they cannot
// be told apart here: such a file must not be imported.
func parseGetmail(lr *lineReader) (*State, error) {
	m := Mailbox{Line: 1}
	var set uidlSet
	for {
		raw, _, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		// The UIDL is whole once its NUL has been written: a last line
		// without its line end loses nothing that matters.
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		uidl, ts, ok := strings.Cut(line, "\x00")
		switch {
		case !ok:
			return nil, lr.errorf("no NUL byte between the UIDL and its timestamp")
		case uidl == "":
			return nil, lr.errorf("an empty UIDL")
		case strings.IndexByte(uidl, '/') >= 0:
			return nil, &FormatError{Tool: lr.tool, File: lr.file, Line: lr.n,
				Problem: fmt.Sprintf("the id %q is an IMAP message's (UIDVALIDITY/UID): this is the state of an IMAP folder", uidl),
				Hint:    "give the oldmail file of getmail's POP3 retriever (oldmail-SERVER-PORT-USER, no folder after it)"}
		}
		if _, err := strconv.ParseInt(strings.TrimSpace(ts), 10, 64); err != nil {
			return nil, lr.errorf("invalid timestamp %q after the UIDL", ts)
		}
		set.add(uidl)
	}
	m.UIDLs = set.uidls
	return &State{Mailboxes: []Mailbox{m}}, nil
}

// getmailStrip is getmail's STRIP_CHAR_RE: the characters replaced in the
// names of its oldmail files.
var getmailStrip = regexp.MustCompile(`[/:;<>|]+`)

// getmailNameMismatch returns "" when the base name of file may be
// getmail's oldmail file of user at host (any port), or is no oldmail
// name at all; otherwise what the name says instead. The host part is
// compared without regard to case.
func getmailNameMismatch(file, user, host string) string {
	base := filepath.Base(file)
	if !strings.HasPrefix(base, "oldmail-") {
		return "" // renamed: the user says whose it is
	}
	prefix := getmailStrip.ReplaceAllString("oldmail-"+host+"-", "-")
	suffix := getmailStrip.ReplaceAllString("-"+user, "-")
	if len(base) > len(prefix)+len(suffix) && strings.EqualFold(base[:len(prefix)], prefix) && strings.HasSuffix(base, suffix) {
		port := base[len(prefix) : len(base)-len(suffix)]
		if _, err := strconv.ParseUint(port, 10, 16); err == nil {
			return ""
		}
	}
	return fmt.Sprintf("getmail names the state of a mailbox oldmail-SERVER-PORT-USER; for %s@%s that would be %sPORT%s, and this file is %s (another mailbox, or an IMAP folder's)",
		user, host, prefix, suffix, base)
}
