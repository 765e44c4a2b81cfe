package adopt

import (
	"errors"
	"io"
	"strings"
)

// parseFetchmail reads fetchmail's idfile (--idfile, by default
// ~/.fetchids), in the format of fetchmail's uid.c
// (initialize_saved_lists and write_saved_lists, fetchmail 6.3 and 6.4):
// one line per message of a POP3 mailbox that fetchmail holds as seen,
//
//	REMOTENAME@QUERYNAME UIDL LF
//
// the user name on the server, '@', the server's host (the poll name, or
// its via), a space and the UIDL. Only the UIDLs fetchmail marked UID_SEEN
// (fetched and kept, with keep) or UID_DELETED (deleted, the deletion not
// yet confirmed by the server) are written; their mark is not. Lines of
// every mailbox fetchmail polls share the file, in no particular order,
// and fetchmail keeps the lines of mailboxes it did not poll as they were.
// fetchmail deletes the file when no mailbox has a UIDL left.
//
// As fetchmail reads a line: leading spaces and tabs are skipped; the
// user and host end at the first space after the first '@' (a user name
// may hold spaces, as Lotus Notes' do, and '@'); the host is what follows
// the last '@' before that space; the UIDL starts after the spaces that
// follow and ends at the next space, tab or line end, and anything after
// it is ignored. Users and hosts are compared without regard to case (see
// Select).
//
// QUIRK: lines starting with '#' and blank lines are skipped: fetchmail
// never writes them, but a file edited by hand may hold them. fetchmail
// skips any line it cannot split into user, host and UIDL; popmigrate
// refuses the file instead, naming the line, and refuses an empty UIDL, a
// NUL byte and a last line without its line end (see lineReader.cutShort).
func parseFetchmail(lr *lineReader) (*State, error) {
	st := &State{}
	type key struct{ user, host string }
	index := map[key]int{}
	var sets []uidlSet
	for {
		line, ended, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if !ended {
			return nil, lr.cutShort()
		}
		rest := strings.TrimLeft(line, " \t")
		if rest == "" || strings.HasPrefix(rest, "#") {
			continue
		}
		if strings.IndexByte(rest, 0) >= 0 {
			return nil, lr.errorf("a NUL byte")
		}
		at := strings.IndexByte(rest, '@')
		if at < 0 {
			return nil, lr.errorf("no '@' (want \"USER@HOST UIDL\")")
		}
		sp := strings.IndexByte(rest[at:], ' ')
		if sp < 0 {
			return nil, lr.errorf("no UIDL after the user and host (want \"USER@HOST UIDL\")")
		}
		userHost := strings.TrimRight(rest[:at+sp], " \t")
		uidl := strings.TrimLeft(rest[at+sp:], " ")
		if end := strings.IndexAny(uidl, " \t"); end >= 0 {
			uidl = uidl[:end]
		}
		if uidl == "" {
			return nil, lr.errorf("an empty UIDL (want \"USER@HOST UIDL\")")
		}
		last := strings.LastIndexByte(userHost, '@')
		k := key{user: userHost[:last], host: userHost[last+1:]}
		if k.host == "" {
			return nil, lr.errorf("an empty host after '@' (want \"USER@HOST UIDL\")")
		}
		i, ok := index[k]
		if !ok {
			i = len(st.Mailboxes)
			index[k] = i
			st.Mailboxes = append(st.Mailboxes, Mailbox{User: k.user, Host: k.host, Line: lr.n})
			sets = append(sets, uidlSet{})
		}
		sets[i].add(uidl)
	}
	for i := range st.Mailboxes {
		st.Mailboxes[i].UIDLs = sets[i].uidls
	}
	return st, nil
}
