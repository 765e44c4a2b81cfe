// Package saslx holds the SASL client mechanisms popmigrate needs that
// github.com/emersion/go-sasl does not have. Its clients are sasl.Client
// values, so the POP3 client (pop3.Client.Auth) and the IMAP exporter
// (imapclient.Client.Authenticate) use them as they use go-sasl's own.
package saslx

import "github.com/emersion/go-sasl"

// XOAuth2 is the name of the XOAUTH2 mechanism.
const XOAuth2 = "XOAUTH2"

// NewXOAuth2Client returns a client of the XOAUTH2 mechanism of Google and
// Microsoft, with user's OAuth 2.0 access token. It is documented, for
// IMAP AUTHENTICATE, POP AUTH and SMTP AUTH alike, by Google
// (https://developers.google.com/gmail/imap/xoauth2-protocol) and
// Microsoft
// (https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth);
// it has no RFC (OAUTHBEARER, RFC 7628, is its standard successor).
//
// The exchange is one initial response, "user=" user "^Aauth=Bearer "
// token "^A^A" (^A is the byte 0x01). On failure the server sends a
// base64 JSON error as a challenge; the client answers it with an empty
// response, and the server then fails the exchange (-ERR, NO). Next
// therefore answers any challenge with an empty response and never
// fails: the failure is the server's to report.
//
// The token is a secret: callers keep the initial response out of logs.
func NewXOAuth2Client(user, token string) sasl.Client {
	return &xoauth2Client{user: user, token: token}
}

type xoauth2Client struct {
	user, token string
}

func (x *xoauth2Client) Start() (mech string, ir []byte, err error) {
	return XOAuth2, []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

// Next answers the server's error challenge with an empty response, so
// that the server ends the exchange with its failure.
func (x *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	return []byte{}, nil
}
