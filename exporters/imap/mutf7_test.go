package imap

import "testing"

func TestEncodeMailbox(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"Archive 2024", "Archive 2024"},
		{"&", "&-"},
		{"Tom & Jerry", "Tom &- Jerry"},
		{"Entwürfe", "Entw&APw-rfe"},
		{"~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"}, // RFC 3501 section 5.1.3
		{"Привет", "&BB8EQAQ4BDIENQRC-"},
		{"📁 files", "&2D3cwQ- files"}, // a surrogate pair
		{"a\tb", "a&AAk-b"},           // a control character is not printable ASCII
		{"x\xffy", "x&,,0-y"},         // invalid UTF-8: U+FFFD
	} {
		if got := encodeMailbox(c.in); got != c.want {
			t.Errorf("encodeMailbox(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
