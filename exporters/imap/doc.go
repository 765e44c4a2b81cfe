// Package imap uploads messages into a folder of an IMAP server (RFC 3501)
// with APPEND: the destination of a migration off POP3 onto IMAP.
//
// # What is stored
//
// Put sends the canonical body with every LF turned into CRLF, so that the
// message read back and canonicalised (CRLF->LF) is byte for byte the body
// that was put. Each message gets the flags of Options.Flags (\Seen by
// default) and an INTERNALDATE per Options.DateFrom (by default the newest
// Received: date, so that the new mailbox sorts by arrival as the old one
// did), read by the header reader every destination shares: the mbox
// From_ line and the .eml file name carry the same date. A message IMAP cannot carry (NUL bytes: RFC 3501 literals are
// CHAR8) or that the server rejects (NO or BAD to APPEND, too large) fails
// with an *exporters.RejectedError (the refusal every destination reports;
// it wraps a *RejectedError with the server's answer), or a
// *QuarantinedError when Options.QuarantineDir keeps a copy; the run goes
// on.
//
// # References
//
// A Delivery's Ref is "UIDVALIDITY/UID", from the APPENDUID of UIDPLUS
// (RFC 4315) or, without it, found after the APPEND by UID SEARCH (UIDs
// above the folder's UIDNEXT before the APPEND, and the Message-ID) and a
// sha256 of each candidate read back.
//
// # Crash safety
//
// The server's tagged OK to APPEND means it holds the message, so Sync
// has nothing to flush. What a crash can lose is the journal's record of
// an APPEND that succeeded: the Exporter implements exporters.Resumable.
// Before the first APPEND after a Sync (or after Resume) it saves an
// intent, the folder's UIDVALIDITY and UIDNEXT, in the journal: one write
// per batch. On Resume after a crash, once the folder's UIDNEXT is still
// (settle: the server may still be storing the dead process's last
// APPEND), the messages at or above the recorded UIDNEXT are read back
// and hashed, and a later Put of a message with the same sha256 returns
// the stored one instead of appending it again. The state is JSON:
//
//	{"uidvalidity":N,"uidnext":N,"open":bool,"pending":[UID,...]}
//
// "open" says an intent is not yet closed by a commit; "pending" lists
// messages found that way which no Put has claimed yet (their POP3
// originals have not been seen again), so that a second crash still finds
// them. A folder deleted and created again gets a new UIDVALIDITY; Resume
// and every connection then fail with ErrUIDValidity, since the journal's
// references no longer name the stored messages.
//
// # Connections
//
// Options.Conns connections APPEND in parallel; Put, Sync and Open are safe
// for concurrent use. A connection that fails during a Put is replaced
// once; an APPEND whose answer was lost is looked up in the folder before
// it is sent again, once the folder's UIDNEXT is still (settle). Every
// command has a deadline (Options.Timeout, counted from the last
// progress) and obeys its context: a cancelled or timed out connection is
// closed and replaced on next use.
//
// When the server offers MULTIAPPEND, LITERAL+ and UIDPLUS, the Puts in
// flight are sent as grouped APPENDs, one transaction of the server's for
// many messages (see multiappend.go for why, and borrow.go for how, since
// go-imap's client cannot send them).
//
// The package never implements exporters.Finder: IMAP cannot look a
// message up by popmigrate's key.
package imap
