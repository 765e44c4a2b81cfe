package imap

import (
	"encoding/base64"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// mutf7 is the base64 of modified UTF-7: ',' in place of '/', no padding.
var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// encodeMailbox returns name in IMAP's modified UTF-7 (RFC 3501 section
// 5.1.3), the form go-imap's client sends a mailbox name in to a server
// that has not enabled UTF8=ACCEPT (popmigrate enables nothing), so that a
// grouped APPEND names the folder go-imap's CREATE and SELECT named.
// Printable ASCII stays as it is but '&', which becomes "&-"; every run of
// other characters becomes '&', the base64 (',' for '/', no padding) of
// its UTF-16BE form, and '-'. An invalid UTF-8 byte is encoded as U+FFFD,
// as go-imap does.
//
// Written here because go-imap v2's encoder is internal (internal/utf7)
// and the other Go packages for it come with go-imap v1, a second IMAP
// library in the build for these few lines.
func encodeMailbox(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); {
		if c := name[i]; c >= 0x20 && c <= 0x7e {
			b.WriteByte(c)
			if c == '&' {
				b.WriteByte('-')
			}
			i++
			continue
		}
		var u16 []uint16
		for i < len(name) && (name[i] < 0x20 || name[i] > 0x7e) {
			r, size := utf8.DecodeRuneInString(name[i:])
			u16 = utf16.AppendRune(u16, r)
			i += size
		}
		raw := make([]byte, 0, 2*len(u16))
		for _, u := range u16 {
			raw = append(raw, byte(u>>8), byte(u))
		}
		b.WriteByte('&')
		b.WriteString(mutf7.EncodeToString(raw))
		b.WriteByte('-')
	}
	return b.String()
}
