package durable

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// BenchmarkBarrier compares the two ways Barrier makes a batch of staged
// files durable: one syncfs(2) of the file system against one fdatasync(2)
// per file (see fdatasyncMax for the figures and the choice). Each is measured on a quiet file system and
// beside a neighbour that keeps dirtying 64 MiB of another file on the
// same file system without syncing it, as another program (or another
// worker) does on a shared disk: syncfs must write the neighbour's data
// too, fdatasync only ours. Run it on the file system of the mail (the
// files go under $POPMIGRATE_BENCH_DIR, default the system temp dir).
//
//	go test -run '^$' -bench Barrier -benchtime 20x ./exporters/internal/durable/
func BenchmarkBarrier(b *testing.B) {
	for _, batch := range []struct {
		name  string
		files int
		size  int
	}{{"64x4KiB", 64, 4 << 10}, {"4x8MiB", 4, 8 << 20}} {
		for _, neighbour := range []bool{false, true} {
			for _, how := range []string{"syncfs", "fdatasync"} {
				name := fmt.Sprintf("%s/neighbour=%v/%s", batch.name, neighbour, how)
				b.Run(name, func(b *testing.B) { benchBarrier(b, batch.files, batch.size, neighbour, how) })
			}
		}
	}
}

func benchBarrier(b *testing.B, files, size int, neighbour bool, how string) {
	dir, err := os.MkdirTemp(benchDir(), "barrier-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	root, err := os.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	w := &Writer{Root: root}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if neighbour {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Create(filepath.Join(dir, "neighbour"))
			if err != nil {
				return
			}
			defer f.Close()
			chunk := make([]byte, 1<<20)
			for off := int64(0); ; off = (off + 1<<20) % (64 << 20) {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.WriteAt(chunk, off); err != nil {
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	b.SetBytes(int64(files * size))
	b.ResetTimer()
	for n := range b.N {
		b.StopTimer()
		names := make([]string, files)
		for i := range names {
			names[i] = fmt.Sprintf("f-%d-%d", n, i)
			if err := root.WriteFile(names[i], data, 0o600); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		switch how {
		case "syncfs":
			err = w.syncfs()
		default:
			err = w.fdatasyncEach(names)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// Barrier takes either way by the size of the batch, and names a file it
// cannot make durable.
func TestBarrierBothWays(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	w := &Writer{Root: root}
	for _, n := range []int{1, fdatasyncMax, fdatasyncMax + 1, 64} {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("b%d-%d", n, i)
			if err := root.WriteFile(names[i], []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Barrier(names); err != nil {
			t.Errorf("Barrier of %d files: %v", n, err)
		}
	}
	if err := w.Barrier([]string{"missing"}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Barrier of a missing file: %v; want an error naming it", err)
	}
}

func benchDir() string {
	if d := os.Getenv("POPMIGRATE_BENCH_DIR"); d != "" {
		return d
	}
	return os.TempDir()
}
