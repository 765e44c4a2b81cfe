package pipeline_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// bigMessage returns a message of exactly size bytes in canonical form:
// LF line ends, lines of about 1000 bytes, a final LF.
func bigMessage(size int) []byte {
	b := make([]byte, 0, size)
	b = append(b, "From: big@example.org\nSubject: a large message\n\n"...)
	line := 0
	for len(b) < size {
		n := min(999, size-len(b)-1)
		for i := range n {
			b = append(b, 'a'+byte((i+line)%26))
		}
		b = append(b, '\n')
		line++
	}
	return b
}

// openSpoolFiles returns how many descriptors of this process point at
// nameless (deleted or O_TMPFILE) spool files in dir.
func openSpoolFiles(t testing.TB, dir string) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Error(err)
		return 0
	}
	n := 0
	for _, de := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", de.Name()))
		if err != nil {
			continue // closed since ReadDir
		}
		// An O_TMPFILE file shows as "DIR/#INODE (deleted)", the
		// fallback's as "DIR/popmigrate-spool-... (deleted)".
		spool := strings.HasPrefix(target, filepath.Join(dir, "popmigrate-spool-")) || strings.HasPrefix(target, filepath.Join(dir, "#"))
		if spool && strings.HasSuffix(target, " (deleted)") {
			n++
		}
	}
	return n
}

// TestRunLargeMessageMemoryFlat sends a 64 MiB message through the whole
// pipeline: it must be spooled to an unlinked temporary file, stored
// byte-equal, and the heap must not grow by anything near its size.
func TestRunLargeMessageMemoryFlat(t *testing.T) {
	const size = 64 << 20
	data := bigMessage(size)
	if len(data) != size {
		t.Fatalf("built %d bytes", len(data))
	}
	sum := sha256.Sum256(data)
	wantSum := hex.EncodeToString(sum[:])

	// The server serves data itself (LF -> CRLF on the fly): the only full
	// copy of the message in this process is the test's.
	e := newEnv(t, []pop3test.Mailbox{{
		User: "alice", Password: passwordOf("alice"),
		Messages: []pop3test.Message{{UID: "big", Data: data}},
	}}, nil)
	spoolDir := filepath.Join(e.dir, "spool")
	if err := os.Mkdir(spoolDir, 0o700); err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.SpoolDir = spoolDir // SpoolThreshold stays the default
	var spooled atomic.Int32
	pipeline.SetTestHooks(o, func(int) {
		// The body is held while it is Put: it must be a deleted file.
		spooled.Store(int32(openSpoolFiles(t, spoolDir)))
	}, nil, nil)

	// Keep the garbage collector close behind, so that the heap reflects
	// what is live rather than what was not yet collected.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	rep := e.run([]*config.Account{e.account("alice")}, o)
	close(stop)
	wg.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	a := accountReport(t, rep, "alice")
	wantCounts(t, a, 1, 1, 0, 0, true)
	if a.StoredBytes != size || len(a.SizeMismatches) != 0 {
		t.Errorf("stored %d bytes, mismatches %v; want %d and none", a.StoredBytes, a.SizeMismatches, size)
	}
	if spooled.Load() != 1 {
		t.Errorf("%d deleted spool files open during Put, want 1", spooled.Load())
	}

	growth := int64(peak.Load()) - int64(before.HeapInuse)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("heap in use: %d MiB before, peak growth %.1f MiB; allocated during the run %.1f MiB",
		before.HeapInuse>>20, float64(growth)/(1<<20), float64(allocated)/(1<<20))
	if growth > 24<<20 {
		t.Errorf("heap grew by %d MiB while moving a %d MiB message", growth>>20, size>>20)
	}
	// Allocation churn (TLS records, server lines) is fine; a copy of the
	// whole message is not.
	if allocated > size {
		t.Errorf("the run allocated %d MiB, more than the message itself", allocated>>20)
	}

	// Byte-equal, compared by streaming the file through sha256.
	path := filepath.Join(e.maildir("alice"), "new", exporters.MessageKey("alice", "big")+maildir.Suffix)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != size || got != wantSum {
		t.Errorf("stored file: %d bytes sha256 %s; want %d %s", n, got, size, wantSum)
	}
	rows, err := e.j.Messages(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].SHA256 != wantSum || rows[0].State != "stored" {
		t.Errorf("journal rows %+v", rows)
	}
	emptyDir(t, spoolDir)
	if n := openSpoolFiles(t, spoolDir); n != 0 {
		t.Errorf("%d spool files still open after the run", n)
	}
	runtime.KeepAlive(data)
}

// emptyDir fails the test unless dir holds no entry.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		names := make([]string, len(entries))
		for i, de := range entries {
			names[i] = de.Name()
		}
		t.Errorf("%s holds %s, want nothing", dir, fmt.Sprint(names))
	}
}

// TestRunCancelReleasesSpoolFiles pins a leak: bodies the downloader had
// queued for a writer that stopped on cancellation kept their spool files
// open until a garbage collection.
func TestRunCancelReleasesSpoolFiles(t *testing.T) {
	msgs := make([]srcMsg, 30)
	for i := range msgs {
		msgs[i] = newMsg(fmt.Sprintf("big%d", i), bigMessage(16<<10+i))
	}
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	spoolDir := filepath.Join(e.dir, "spool")
	if err := os.Mkdir(spoolDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	o := testOptions()
	o.SpoolDir, o.SpoolThreshold = spoolDir, 4<<10 // every body in a file
	pipeline.SetTestHooks(o, func(n int) {
		if n == 3 {
			cancel()
		}
	}, nil, nil)
	_, err := pipeline.Run(ctx, e.j, []*config.Account{e.account("alice")}, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if n := openSpoolFiles(t, spoolDir); n != 0 {
		t.Errorf("%d spool files still open after Run returned", n)
	}
	emptyDir(t, spoolDir)
}
