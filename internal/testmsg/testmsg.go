// Package testmsg gives tests the sample messages in testdata/messages: the
// tricky messages (bare CR, NUL bytes, 8-bit, lines of ".", "From " lines, a
// 200 KiB line, a 1 MiB attachment, no final newline, ...) that every part
// of popmigrate must carry byte-exact.
//
// The files hold messages in popmigrate's canonical form (LF line ends, the
// bytes after dot-unstuffing). testdata/messages/README.md says what each
// one tests.
package testmsg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Ext is the file name extension of a sample message. Load reads only the
// files with this extension.
const Ext = ".eml"

// maxParents bounds the walk from the working directory up to go.mod.
const maxParents = 64

// Sample is one sample message.
type Sample struct {
	// Name is the file name without Ext, e.g. "dot-lines".
	Name string
	// Data is the file's bytes, exactly as stored.
	Data []byte
}

// Dir returns the absolute path of testdata/messages. It finds the
// repository root by walking up from the working directory to the first
// folder holding go.mod, and fails the test if there is none.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := dir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func dir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("testmsg: %w", err)
	}
	d := wd
	for range maxParents {
		if fi, err := os.Stat(filepath.Join(d, "go.mod")); err == nil && fi.Mode().IsRegular() {
			return filepath.Join(d, "testdata", "messages"), nil
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("testmsg: looking for go.mod: %w", err)
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	return "", fmt.Errorf("testmsg: no go.mod in %s or any folder above it", wd)
}

// Load returns every sample message in testdata/messages, sorted by Name.
// Each call reads the files again, so callers may modify the returned
// bytes. It fails the test if the folder cannot be read or holds no
// sample.
func Load(t testing.TB) []Sample {
	t.Helper()
	samples, err := load()
	if err != nil {
		t.Fatal(err)
	}
	return samples
}

func load() ([]Sample, error) {
	d, err := dir()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(d)
	if err != nil {
		return nil, fmt.Errorf("testmsg: %w", err)
	}
	var samples []Sample
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, Ext) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(d, name))
		if err != nil {
			return nil, fmt.Errorf("testmsg: %w", err)
		}
		samples = append(samples, Sample{Name: strings.TrimSuffix(name, Ext), Data: data})
	}
	if len(samples) == 0 {
		return nil, fmt.Errorf("testmsg: no *%s file in %s", Ext, d)
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i].Name < samples[j].Name })
	return samples, nil
}

// Find returns the sample called name (without Ext), and fails the test if
// there is none.
func Find(t testing.TB, name string) Sample {
	t.Helper()
	if name == "" || strings.ContainsAny(name, `/\`) {
		t.Fatalf("testmsg: invalid sample name %q", name)
	}
	d, err := dir()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(d, name+Ext))
	if err != nil {
		t.Fatalf("testmsg: sample %q: %v", name, err)
	}
	return Sample{Name: name, Data: data}
}
