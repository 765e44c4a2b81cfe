package saslx

import (
	"bytes"
	"encoding/base64"
	"testing"
)

// TestXOAuth2InitialResponse pins the exact bytes of the initial
// response, and their base64 form from Google's documentation of the
// mechanism.
func TestXOAuth2InitialResponse(t *testing.T) {
	mech, ir, err := NewXOAuth2Client("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg").Start()
	if err != nil {
		t.Fatal(err)
	}
	if mech != "XOAUTH2" {
		t.Errorf("mechanism %q, want XOAUTH2", mech)
	}
	want := "user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
	if string(ir) != want {
		t.Errorf("initial response %q, want %q", ir, want)
	}
	const googleB64 = "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
	if got := base64.StdEncoding.EncodeToString(ir); got != googleB64 {
		t.Errorf("base64 %s, want %s", got, googleB64)
	}
}

// TestXOAuth2ErrorChallenge checks that the JSON error challenge is
// answered with an empty, non-nil response (sent as an empty line, not a
// cancellation) and no error.
func TestXOAuth2ErrorChallenge(t *testing.T) {
	c := NewXOAuth2Client("bob", "tok")
	for _, ch := range [][]byte{[]byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), nil, {}} {
		resp, err := c.Next(ch)
		if err != nil || resp == nil || !bytes.Equal(resp, []byte{}) {
			t.Errorf("Next(%q) = %q (nil %v), %v; want an empty response", ch, resp, resp == nil, err)
		}
	}
}
