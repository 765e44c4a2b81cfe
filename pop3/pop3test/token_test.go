package pop3test

import (
	"encoding/base64"
	"sync"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestTokenValid: with ServerOptions.TokenValid the server asks it about
// each token instead of comparing with Mailbox.Token, and a rejected
// token gets the error challenge, after which the session may try again.
func TestTokenValid(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	valid := map[string]bool{"fresh": true}
	_, addr := start(t, []Mailbox{{User: "bob", Token: "never-used"}}, &ServerOptions{
		Faults: Faults{SASLOAuth: true},
		TokenValid: func(user, token string) bool {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, user+":"+token)
			return user == "bob" && valid[token]
		},
	})
	c := dial(t, addr)
	c.cmd("AUTH XOAUTH2 "+b64("user=bob\x01auth=Bearer never-used\x01\x01"), "+ "+b64(oauthChallenge))
	c.cmd("", "-ERR [AUTH] invalid token")
	c.cmd("AUTH OAUTHBEARER "+b64("n,a=bob,\x01auth=Bearer fresh\x01\x01"), "+OK")
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 || asked[0] != "bob:never-used" || asked[1] != "bob:fresh" {
		t.Errorf("TokenValid asked %q", asked)
	}
}

// TestSASLTwoStep: the fault refuses an initial response on the AUTH
// line and accepts it after the empty challenge.
func TestSASLTwoStep(t *testing.T) {
	_, addr := start(t, []Mailbox{{User: "bob", Token: "tok"}}, &ServerOptions{Faults: Faults{SASLOAuth: true, SASLTwoStep: true}})
	c := dial(t, addr)
	ir := b64("user=bob\x01auth=Bearer tok\x01\x01")
	c.cmd("AUTH XOAUTH2 "+ir, "-ERR initial response not accepted")
	c.cmd("AUTH XOAUTH2", "+ ")
	c.cmd(ir, "+OK")
}
