package config

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
)

// Warnings returns, once each, the warnings about the files behind
// accounts: a password or token file that its group or others can read,
// and an accounts CSV or config file that holds passwords and that others
// can read (found by LoadCSV and LoadYAML). The caller prints them (on
// stderr); they do not stop a run. Secret files are checked now, with a
// stat: Resolve reads them later, once per session.
func Warnings(accounts []*Account) []string {
	var out []string
	seen := make(map[string]bool)
	add := func(w string) {
		if w != "" && !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	files := make(map[string]bool)
	for _, a := range accounts {
		add(a.fileWarning)
		var app OAuth2App
		if a.OAuth2App != nil {
			app = *a.OAuth2App
		}
		for _, s := range []struct {
			what string
			file string
		}{
			{"password file", a.Password.File},
			{"OAuth2 token file", a.OAuth2Token.File},
			{"IMAP password file", a.ToPassword.File},
			{"IMAP OAuth2 token file", a.ToOAuth2Token.File},
			{"OAuth2 client secret file", app.ClientSecret.File},
			{"OAuth2 client certificate and key file", app.ClientCert},
			{"Google service account key file", app.ServiceAccount},
		} {
			if s.file == "" {
				continue
			}
			key := s.file
			if abs, err := filepath.Abs(s.file); err == nil {
				key = abs
			}
			if files[key] {
				continue
			}
			files[key] = true
			if fi, err := os.Stat(s.file); err == nil {
				add(modeWarning(fi, s.what+" "+s.file, s.file))
			}
		}
	}
	return out
}

// setFileWarning attaches w, a warning about the file accounts come from,
// to each of them.
func setFileWarning(accounts []*Account, w string) {
	for _, a := range accounts {
		a.fileWarning = w
	}
}

// looseFileWarning is the warning for the file behind r when r has a Stat
// method (an *os.File) and others can read it; "" otherwise. The file is
// named by its Name method when it has one, else by name. what describes
// it ("accounts file"), holds what is in it (" holds passwords and").
func looseFileWarning(r io.Reader, name, what, holds string) string {
	st, ok := r.(interface{ Stat() (fs.FileInfo, error) })
	if !ok {
		return ""
	}
	fi, err := st.Stat()
	if err != nil {
		return ""
	}
	if n, ok := r.(interface{ Name() string }); ok && n.Name() != "" {
		name = n.Name()
	}
	return modeWarning(fi, what+" "+name+holds, name)
}

// modeWarning warns about the regular file fi, described as what, when its
// group or others may read it; path is the file to chmod.
func modeWarning(fi fs.FileInfo, what, path string) string {
	// Windows has no such mode bits; pipes and devices (/dev/stdin, a
	// process substitution) have modes of their own.
	if runtime.GOOS == "windows" || !fi.Mode().IsRegular() {
		return ""
	}
	perm := fi.Mode().Perm()
	if perm&0o044 == 0 {
		return ""
	}
	who := "its group and others"
	switch {
	case perm&0o004 == 0:
		who = "its group"
	case perm&0o040 == 0:
		who = "others"
	}
	return fmt.Sprintf("%s is readable by %s (mode %04o); run: chmod 600 %s", what, who, perm, shellQuote(path))
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./+:@%,=-]+$`)

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if strings.HasPrefix(s, "-") {
		s = "./" + s // not an option of chmod
	}
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
