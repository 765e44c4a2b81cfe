package tlsconf

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/internal/testpki"
)

func TestClient(t *testing.T) {
	dir := t.TempDir()
	pki, err := testpki.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("not really a key")})
	unreadable := write("unreadable.pem", ca, 0o000)
	tests := []struct {
		name     string
		opts     Options
		wantPool bool
		errIs    error    // nil: no check
		errHas   []string // empty: want no error
	}{
		{name: "system roots", opts: Options{ServerName: "pop.example.org"}},
		{name: "no server name", opts: Options{}},
		{name: "insecure", opts: Options{ServerName: "pop.example.org", InsecureSkipVerify: true}},
		{name: "ca file", opts: Options{ServerName: "localhost", CAFile: pki.CAFile}, wantPool: true},
		{name: "ca among other blocks", opts: Options{ServerName: "localhost",
			CAFile: write("mixed.pem", append(append([]byte("a comment line\n"), key...), ca...), 0o600)}, wantPool: true},
		{name: "missing", opts: Options{CAFile: filepath.Join(dir, "nope.pem")},
			errIs: fs.ErrNotExist, errHas: []string{"ca file " + filepath.Join(dir, "nope.pem") + ": ", "no such file"}},
		{name: "directory", opts: Options{CAFile: dir},
			errHas: []string{"ca file " + dir + ": ", "is a directory"}},
		{name: "unreadable", opts: Options{CAFile: unreadable},
			errIs: fs.ErrPermission, errHas: []string{"ca file " + unreadable + ": ", "permission denied"}},
		{name: "empty", opts: Options{CAFile: write("empty.pem", nil, 0o600)},
			errHas: []string{"ca file " + filepath.Join(dir, "empty.pem") + ": no PEM certificate in it"}},
		{name: "key only", opts: Options{CAFile: write("key.pem", key, 0o600)},
			errHas: []string{"ca file " + filepath.Join(dir, "key.pem") + ": no PEM certificate in it"}},
		{name: "not PEM", opts: Options{CAFile: write("der.crt", []byte{0x30, 0x82, 0x01, 0x0a}, 0o600)},
			errHas: []string{"ca file " + filepath.Join(dir, "der.crt") + ": no PEM certificate in it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "unreadable" && os.Geteuid() == 0 {
				t.Skip("root reads files without permission")
			}
			cfg, err := Client(tt.opts)
			if len(tt.errHas) > 0 {
				if err == nil {
					t.Fatalf("Client = %+v, want an error", cfg)
				}
				for _, s := range tt.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not hold %q", err, s)
					}
				}
				if strings.Count(err.Error(), tt.opts.CAFile) != 1 {
					t.Errorf("error %q should name the file once", err)
				}
				if tt.errIs != nil && !errors.Is(err, tt.errIs) {
					t.Errorf("error %q is not %v", err, tt.errIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ServerName != tt.opts.ServerName || cfg.MinVersion != tls.VersionTLS12 ||
				cfg.InsecureSkipVerify != tt.opts.InsecureSkipVerify || (cfg.RootCAs != nil) != tt.wantPool {
				t.Errorf("Client(%+v) = ServerName %q, MinVersion %x, InsecureSkipVerify %v, RootCAs %v",
					tt.opts, cfg.ServerName, cfg.MinVersion, cfg.InsecureSkipVerify, cfg.RootCAs != nil)
			}
		})
	}
}

// TestClientTrustsCAFile shakes hands with a server whose certificate the
// CA file signed, and checks that without the file (the system roots) or
// with another CA's file the certificate is refused.
func TestClientTrustsCAFile(t *testing.T) {
	pki, err := testpki.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := testpki.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		caFile string
		ok     bool
	}{
		{"own CA", pki.CAFile, true},
		{"system roots", "", false},
		{"another CA", other.CAFile, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Client(Options{ServerName: "localhost", CAFile: tt.caFile})
			if err != nil {
				t.Fatal(err)
			}
			err = handshake(t, cfg, pki.ServerConfig)
			if tt.ok && err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if !tt.ok && (err == nil || !strings.Contains(err.Error(), "certificate")) {
				t.Fatalf("handshake: %v, want a certificate error", err)
			}
		})
	}
}

// TestClientResumesSessions: a second connection with a new config from
// Client resumes the first one's session, and a config that trusts
// another CA does not resume it: its handshake verifies the certificate
// and fails.
func TestClientResumesSessions(t *testing.T) {
	pki, err := testpki.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := testpki.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dial := func(caFile string) (tls.ConnectionState, error) {
		t.Helper()
		cfg, err := Client(Options{ServerName: "localhost", CAFile: caFile})
		if err != nil {
			t.Fatal(err)
		}
		return connect(t, cfg, pki.ServerConfig)
	}
	if st, err := dial(pki.CAFile); err != nil || st.DidResume {
		t.Fatalf("first connection: resumed %v, %v; want a full handshake", st.DidResume, err)
	}
	if st, err := dial(pki.CAFile); err != nil || !st.DidResume {
		t.Fatalf("second connection: resumed %v, %v; want the first one's session resumed", st.DidResume, err)
	}
	if st, err := dial(other.CAFile); err == nil || st.DidResume {
		t.Fatalf("with another CA: resumed %v, %v; want a certificate error", st.DidResume, err)
	}
}

// handshake runs a TLS handshake between a client with cfg and a server
// with srvCfg over loopback TCP and returns the client's error.
func handshake(t *testing.T, cfg, srvCfg *tls.Config) error {
	t.Helper()
	_, err := connect(t, cfg, srvCfg)
	return err
}

// connect runs a TLS handshake between a client with cfg and a server
// with srvCfg over loopback TCP (a net.Pipe has no buffer: a client that
// fails mid-flight and a server still writing would block each other),
// reads the one byte the server then writes (so that a TLS 1.3 session
// ticket, sent after the handshake, reaches the client's cache), and
// returns the client's connection state and error.
func connect(t *testing.T, cfg, srvCfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc, err := ln.Accept()
		if err != nil {
			return
		}
		defer sc.Close()
		ts := tls.Server(sc, srvCfg)
		if ts.HandshakeContext(ctx) == nil {
			ts.Write([]byte{'+'})
		}
	}()
	cc, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cc.Close(); <-done }()
	cc.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(cc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return tls.ConnectionState{}, err
	}
	if _, err := tc.Read(make([]byte, 1)); err != nil {
		return tc.ConnectionState(), err
	}
	return tc.ConnectionState(), nil
}
