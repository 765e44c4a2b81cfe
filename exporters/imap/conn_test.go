package imap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestQuirkNoUIDNextInSelect checks the fallback to STATUS for a server
// that leaves UIDNEXT out of its SELECT answer.
func TestQuirkNoUIDNextInSelect(t *testing.T) {
	srv := startMem(t, memConfig{noUIDNext: true})
	e := newExporter(t, srv.options("NoUIDNext"))
	mustPut(t, e, msgN(1))
	mustPut(t, e, msgN(2))
	e2 := newExporter(t, srv.options("NoUIDNext"))
	j := &fakeJournal{}
	e2.Resume(testCtx(t), "", j.save)
	mustPut(t, e2, msgN(3))
	var st state
	json.Unmarshal([]byte(j.last()), &st)
	if st.UIDNext != 3 {
		t.Errorf("intent %s, want uidnext 3 (from STATUS)", j.last())
	}
}

// TestStartTLSRequired checks that with Security "starttls" a server that
// does not offer STARTTLS gets no LOGIN, and that one that does works.
func TestStartTLSRequired(t *testing.T) {
	srv := startMem(t, memConfig{}) // no STARTTLS, but LOGIN in clear text would be accepted
	o := srv.options("X")
	o.Security = SecurityStartTLS
	o.TLSConfig = srv.pki.ClientConfig()
	_, err := New(testCtx(t), o)
	if !errors.Is(err, ErrNoStartTLS) {
		t.Errorf("New against a server without STARTTLS: %v, want ErrNoStartTLS", err)
	}
	if n := srv.logins.Load(); n != 0 {
		t.Errorf("%d logins reached the server, want none", n)
	}

	tlsSrv := startMem(t, memConfig{startTLS: true})
	e := newExporter(t, tlsSrv.options("X"))
	mustPut(t, e, msgN(1))
	if n := tlsSrv.logins.Load(); n != 1 {
		t.Errorf("%d logins, want 1", n)
	}
}

// TestTLSVerified checks that a server certificate from an unknown CA is
// refused.
func TestTLSVerified(t *testing.T) {
	srv := startMem(t, memConfig{implicitTLS: true})
	o := srv.options("X")
	o.TLSConfig = nil // system roots: the test CA is unknown
	if _, err := New(testCtx(t), o); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("New with an untrusted certificate: %v, want a certificate error", err)
	}
	if n := srv.logins.Load(); n != 0 {
		t.Errorf("%d logins, want none", n)
	}
}

func TestAuth(t *testing.T) {
	tests := []struct {
		name     string
		mechs    []string
		password string
		token    string
		wantErr  error
	}{
		{"plain", []string{"PLAIN"}, memPassword, "", nil},
		{"plain-wrong", []string{"PLAIN"}, "wrong", "", ErrAuth},
		{"xoauth2", []string{"PLAIN", "XOAUTH2"}, "", memToken, nil},
		{"xoauth2-wrong", []string{"XOAUTH2"}, "", "bad-token", ErrAuth},
		{"oauthbearer", []string{"OAUTHBEARER"}, "", memToken, nil},
		{"oauthbearer-wrong", []string{"OAUTHBEARER"}, "", "bad-token", errors.New("OAUTHBEARER")},
		{"token-unsupported", []string{"PLAIN"}, "", memToken, ErrAuthUnsupported},
		{"login", nil, memPassword, "", nil},
		{"login-wrong", nil, "wrong", "", ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startMem(t, memConfig{mechs: tt.mechs})
			o := srv.options("Auth")
			o.Password, o.OAuth2Token = tt.password, tt.token
			e, err := New(testCtx(t), o)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr == nil:
				mustPut(t, e, msgN(1))
				e.Close()
			case err == nil:
				e.Close()
				t.Fatalf("New succeeded, want %v", tt.wantErr)
			case !errors.Is(err, tt.wantErr) && !strings.Contains(err.Error(), tt.wantErr.Error()):
				t.Errorf("New: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				for _, secret := range []string{tt.password, tt.token} {
					if secret != "" && strings.Contains(err.Error(), secret) {
						t.Errorf("error %q holds the secret", err)
					}
				}
			}
		})
	}
}

// TestTimeout stalls the server's answers after an APPEND: the watchdog
// closes the connection after Options.Timeout, Put reconnects once, finds
// the stored message and does not append it again. When every
// connection stalls, Put fails with ErrTimeout.
func TestTimeout(t *testing.T) {
	srv := startMem(t, memConfig{})
	f := &faults{}
	o := srv.options("Stall")
	o.Dial = f.dial
	o.Timeout = 300 * time.Millisecond
	e := newExporter(t, o)

	f.stall.Store(1)
	start := time.Now()
	ref := mustPut(t, e, msgN(1))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Put took %v", d)
	}
	if n := len(srv.messages(t, "Stall")); n != 1 {
		t.Errorf("%d messages after a stalled answer, want 1", n)
	}
	if got := mustOpen(t, e, ref); !bytes.Equal(got, messageBytes(msgN(1))) {
		t.Errorf("read back %q", got)
	}

	f.stallOn = []string{" APPEND ", " SEARCH "} // the lookup after reconnecting stalls too
	f.stall.Store(2)
	start = time.Now()
	_, err := e.Put(testCtx(t), msgN(2))
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("Put with every answer stalled: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("failing Put took %v", d)
	}
	// The stalled APPEND reached the server: the next Put of the message
	// finds the copy instead of adding one.
	mustPut(t, e, msgN(2))
	if n := len(srv.messages(t, "Stall")); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

// TestCancelWhileWaiting cancels a Put whose APPEND answer never comes: Put
// returns the context's error at once, and a later Put of the same message
// does not duplicate it.
func TestCancelWhileWaiting(t *testing.T) {
	srv := startMem(t, memConfig{})
	f := &faults{}
	o := srv.options("Cancel")
	o.Dial = f.dial
	e := newExporter(t, o)
	j := &fakeJournal{}
	e.Resume(testCtx(t), "", j.save)

	f.stall.Store(1)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := e.Put(ctx, msgN(1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put with a stalled answer and a short context: %v", err)
	}
	// Until the lost APPEND is resolved the state stays open.
	if st := e.CommitState(); !strings.Contains(st, `"open":true`) {
		t.Errorf("CommitState = %s with an unresolved APPEND, want open", st)
	}
	mustPut(t, e, msgN(1))
	if n := len(srv.messages(t, "Cancel")); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}
