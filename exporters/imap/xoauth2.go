package imap

import "github.com/emersion/go-sasl"

// xoauth2 is the SASL XOAUTH2 mechanism of Google and Microsoft
// (https://developers.google.com/gmail/imap/xoauth2-protocol): one initial
// response "user=U^Aauth=Bearer TOKEN^A^A". On failure the server sends a
// JSON error as a challenge and expects an empty response before its NO.
type xoauth2 struct {
	user, token string
}

// newXOAuth2Client returns a SASL client for XOAUTH2 with user's access
// token.
func newXOAuth2Client(user, token string) sasl.Client {
	return &xoauth2{user: user, token: token}
}

func (x *xoauth2) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

// Next answers the server's error challenge with an empty response, so
// that the server ends the exchange with its tagged NO.
func (x *xoauth2) Next(challenge []byte) ([]byte, error) {
	return []byte{}, nil
}
