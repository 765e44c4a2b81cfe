package main

import (
	"os"
	"path/filepath"
	"testing"
)

// /dev/null is a character device but no terminal: no progress bar there.
func TestDevNullIsNotATerminal(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	if isTerminal(devNull) {
		t.Errorf("%s counts as a terminal", os.DevNull)
	}
	file, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if isTerminal(file) {
		t.Error("a regular file counts as a terminal")
	}
	if isTerminal(&lockedWriter{w: devNull}) {
		t.Error("a writer that is not an *os.File counts as a terminal")
	}
}
