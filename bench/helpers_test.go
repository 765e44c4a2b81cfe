//go:build linux

package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests run in `make test`: they pin the parts of TestBenchCompare
// that decide whether a run counts, without Dovecot or mpop.

func TestMedian(t *testing.T) {
	wall := func(s sample) float64 { return s.wall.Seconds() }
	mk := func(secs ...float64) []sample {
		var ss []sample
		for _, v := range secs {
			ss = append(ss, sample{wall: time.Duration(v * float64(time.Second))})
		}
		return ss
	}
	for _, c := range []struct {
		in   []sample
		want float64
	}{
		{mk(3, 1, 2), 2},
		{mk(5), 5},
		{mk(4, 1, 3, 2), 2.5},
		{nil, 0},
	} {
		if got := median(c.in, wall); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestDiffSorted(t *testing.T) {
	for _, c := range []struct {
		want, got              []string
		wantMissing, wantExtra int
	}{
		{[]string{"a", "b", "c"}, []string{"a", "b", "c"}, 0, 0},
		{[]string{"a", "b", "c"}, []string{"a", "c"}, 1, 0},
		{[]string{"a", "b"}, []string{"a", "b", "b"}, 0, 1},
		{[]string{"a", "b"}, []string{"a", "x"}, 1, 1},
		{[]string{"a"}, nil, 1, 0},
		{nil, []string{"z"}, 0, 1},
	} {
		m, e := diffSorted(c.want, c.got)
		if m != c.wantMissing || e != c.wantExtra {
			t.Errorf("diffSorted(%v, %v) = %d missing, %d extra; want %d, %d", c.want, c.got, m, e, c.wantMissing, c.wantExtra)
		}
	}
}

// TestVerifyMaildir: a run that lost, duplicated, changed or half-wrote a
// message must not count.
func TestVerifyMaildir(t *testing.T) {
	msgs := [][]byte{[]byte("Subject: one\n\nbody\n"), []byte("Subject: two\n\n.\n"), []byte("Subject: three\n\nx\n")}
	box := mailbox{user: "user1", messages: len(msgs)}
	for _, m := range msgs {
		sum := sha256.Sum256(m)
		box.sums = append(box.sums, hex.EncodeToString(sum[:]))
	}
	slices.Sort(box.sums)

	write := func(t *testing.T, dir, sub, name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, sub, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// good is a Maildir holding exactly msgs, one in cur/ as mpop or a
	// mail reader may leave it.
	good := func(t *testing.T) string {
		t.Helper()
		dir := t.TempDir()
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		write(t, dir, "new", "1.popmigrate", msgs[0])
		write(t, dir, "new", "2.popmigrate", msgs[1])
		write(t, dir, "cur", "3.host:2,S", msgs[2])
		return dir
	}
	if err := verifyMaildir(good(t), box); err != nil {
		t.Fatalf("complete Maildir: %v", err)
	}
	for _, c := range []struct {
		name  string
		spoil func(t *testing.T, dir string)
		want  string
	}{
		{"missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "new", "2.popmigrate"))
		}, "holds 2 messages, want 3: 1 missing"},
		{"duplicate", func(t *testing.T, dir string) {
			write(t, dir, "new", "4.popmigrate", msgs[0])
		}, "holds 4 messages, want 3: 0 missing or changed, 1 unexpected"},
		{"changed", func(t *testing.T, dir string) {
			write(t, dir, "new", "1.popmigrate", bytes.ReplaceAll(msgs[0], []byte("\n"), []byte("\r\n")))
		}, "1 missing or changed, 1 unexpected"},
		{"tmp left", func(t *testing.T, dir string) {
			write(t, dir, "tmp", "5.partial", msgs[0][:4])
		}, "1 files left in"},
		{"no new", func(t *testing.T, dir string) {
			os.RemoveAll(filepath.Join(dir, "new"))
		}, "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := good(t)
			c.spoil(t, dir)
			err := verifyMaildir(dir, box)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "user1") {
				t.Fatalf("verifyMaildir = %v, want an error naming user1 with %q", err, c.want)
			}
		})
	}
}

// TestMakeCorpus: messages are in canonical form, deterministic, of the
// three size classes, and the sums and sizes describe them.
func TestMakeCorpus(t *testing.T) {
	const perUser = 120
	users, boxes := makeCorpus(2, perUser)
	again, _ := makeCorpus(2, perUser)
	if len(users) != 2 || len(boxes) != 2 {
		t.Fatalf("got %d users, %d boxes, want 2", len(users), len(boxes))
	}
	counts := make([]int, len(sizeClasses))
	seen := make(map[string]bool)
	for u, usr := range users {
		b := boxes[u]
		if usr.Name != b.user || usr.Password != b.password || len(usr.Messages) != perUser || b.messages != perUser {
			t.Fatalf("user %d: %q/%q with %d messages does not match box %+v", u, usr.Name, usr.Password, len(usr.Messages), b.user)
		}
		var size int64
		var sums []string
		for i, m := range usr.Messages {
			if !bytes.Equal(m, again[u].Messages[i]) {
				t.Fatalf("%s message %d differs between two calls", usr.Name, i+1)
			}
			if bytes.IndexByte(m, '\r') >= 0 || !bytes.HasSuffix(m, []byte("\n")) {
				t.Fatalf("%s message %d is not canonical (CR or no final LF)", usr.Name, i+1)
			}
			if !bytes.Contains(m, []byte("\nMessage-ID: <")) || !bytes.Contains(m, []byte("\n\n")) {
				t.Fatalf("%s message %d lacks a Message-ID or the blank line after the headers", usr.Name, i+1)
			}
			id := string(m[bytes.Index(m, []byte("\nMessage-ID: <")):][:40])
			if seen[id] {
				t.Fatalf("%s message %d repeats %q", usr.Name, i+1, id)
			}
			seen[id] = true
			size += int64(len(m))
			sum := sha256.Sum256(m)
			sums = append(sums, hex.EncodeToString(sum[:]))
			for k, c := range sizeClasses {
				if len(m) >= c.size*7/10 && len(m) <= c.size*13/10 {
					counts[k]++
					if c.dotLine && !bytes.Contains(m, []byte("\n. a line that starts with a dot")) {
						t.Errorf("%s message %d (%d bytes) lacks its dot line", usr.Name, i+1, len(m))
					}
					break
				}
			}
		}
		slices.Sort(sums)
		if size != b.bytes || !slices.Equal(sums, b.sums) {
			t.Fatalf("%s: box says %d bytes, messages have %d; sums equal: %v", usr.Name, b.bytes, size, slices.Equal(sums, b.sums))
		}
	}
	total := 0
	for k, c := range sizeClasses {
		total += counts[k]
		share := float64(counts[k]) / float64(2*perUser)
		if share < c.share/2 || share > c.share*1.5 {
			t.Errorf("class %d bytes: %d of %d messages (%.2f), want about %.2f", c.size, counts[k], 2*perUser, share, c.share)
		}
	}
	if total != 2*perUser {
		t.Errorf("%d of %d messages fall in no size class", 2*perUser-total, 2*perUser)
	}
}

func TestMpoprc(t *testing.T) {
	boxes := []mailbox{{user: "user1"}, {user: "user2"}}
	rc := mpoprc("/ca.pem", "10995", "/run", boxes, func(u string) string { return "/pw/" + u })
	for _, want := range []string{
		"\nport 10995\n", "\ntls on\n", "\ntls_starttls off\n", "\ntls_trust_file /ca.pem\n",
		"\nkeep on\n", "\nonly_new off\n", "\nreceived_header off\n", "\nuidls_file /run/uidls/%U\n",
		"\naccount user1\nuser user1\npasswordeval cat /pw/user1\ndelivery maildir /run/mail/user1\n",
		"\naccount user2\nuser user2\npasswordeval cat /pw/user2\ndelivery maildir /run/mail/user2\n",
	} {
		if !strings.Contains(rc, want) {
			t.Errorf("mpoprc lacks %q:\n%s", want, rc)
		}
	}
	if strings.Contains(rc, "password ") {
		t.Errorf("mpoprc holds a password:\n%s", rc)
	}
}

func TestStripTUID(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Subject: a\nX-TUID: 8kins1LOSSjB\n\nbody\n", "Subject: a\n\nbody\n"},
		{"X-TUID: abc\nSubject: a\n\nbody\n", "Subject: a\n\nbody\n"},
		{"Subject: a\n\nX-TUID: in the body\n", "Subject: a\n\nX-TUID: in the body\n"},
		{"Subject: a\n\nbody\n", "Subject: a\n\nbody\n"},
	} {
		if got := string(stripTUID([]byte(c.in))); got != c.want {
			t.Errorf("stripTUID(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestMbsyncrc(t *testing.T) {
	rc := mbsyncrc(mbsyncConf{tls: "SSLType", port: "10993", certFile: "/srv.pem", folder: "bench0001",
		state: "/run/state", mail: "/run/mail"}, []mailbox{{user: "user1"}}, func(u string) string { return "/pw/" + u })
	for _, want := range []string{
		"IMAPAccount far-user1\nHost 127.0.0.1\nPort 10993\nUser user1\nPassCmd \"cat /pw/user1\"\nSSLType IMAPS\nCertificateFile /srv.pem\n",
		"IMAPStore far-user1\nAccount far-user1\n", "MaildirStore near-user1\nInbox /run/mail/user1\n",
		"Channel user1\nFar :far-user1:bench0001\nNear :near-user1:INBOX\nCreate Far\nSync Push\nExpunge None\nRemove None\nSyncState /run/state/user1/\n",
	} {
		if !strings.Contains(rc, want) {
			t.Errorf("mbsyncrc lacks %q:\n%s", want, rc)
		}
	}
	for v, want := range map[string]string{"isync 1.4.4": "SSLType", "isync 1.5.0": "TLSType", "isync 2.0": "TLSType", "?": "SSLType"} {
		if got := mbsyncTLSKeyword(v); got != want {
			t.Errorf("mbsyncTLSKeyword(%q) = %q, want %q", v, got, want)
		}
	}
}

// TestPairs: ratios are taken per round, then their median.
func TestPairs(t *testing.T) {
	s := func(wall float64) sample { return sample{wall: time.Duration(wall * float64(time.Second))} }
	r := &benchRow{}
	r.samples[cPop] = []sample{s(1), s(4), s(3)}
	r.samples[cBase] = []sample{s(2), s(4), s(2)}
	r.samples[cPopNoVerify] = []sample{s(1), s(2), s(3)}
	if v, ok := r.value(tBase); !ok || v != 1 {
		t.Errorf("popmigrate / mpop = %v, %v; want the median of 0.5, 1, 1.5 = 1", v, ok)
	}
	if v, ok := r.value(tVerify); !ok || v != 0 {
		t.Errorf("verify = %v, %v; want the median of 0, 1, 0 = 0", v, ok)
	}
	if _, ok := r.value(tRef); ok {
		t.Error("popmigrate / reference without reference runs reported a value")
	}
	if got := targetString(r, target{tBase, 0.8}); !strings.Contains(got, "missed") {
		t.Errorf("target 0.8 with value 1: %q, want missed", got)
	}
	if got := targetString(r, target{tVerify, 0.15}); !strings.Contains(got, " met") {
		t.Errorf("verify target 15 %% with value 0: %q, want met", got)
	}
	gs := groups([]mailbox{{user: "a"}, {user: "b"}, {user: "c"}}, 2)
	if len(gs) != 2 || len(gs[0]) != 2 || len(gs[1]) != 1 || gs[0][1].user != "c" {
		t.Errorf("groups of 3 in 2 = %v", gs)
	}
}
