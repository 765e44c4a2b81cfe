// Command demoserver is the sample POP3S server behind `make demo`: it
// serves the mailboxes under testdata/demo (one folder per user, one file
// per message) on 127.0.0.1 with implicit TLS from a private CA, and
// writes what a client needs into the state folder: ca.pem, one password
// file per user and accounts.csv. It serves until SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/popmigrate/popmigrate/internal/testpki"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

func main() {
	mailboxes := flag.String("mailboxes", "testdata/demo", "folder with one sub-folder of messages per user")
	state := flag.String("state", "demo-state", "folder for ca.pem, passwords and accounts.csv")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("demoserver: ")
	if err := run(*mailboxes, *state); err != nil {
		log.Fatal(err)
	}
}

func run(mailboxDir, state string) error {
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	pki, err := testpki.New(state)
	if err != nil {
		return err
	}
	users, err := os.ReadDir(mailboxDir)
	if err != nil {
		return err
	}
	var boxes []pop3test.Mailbox
	for _, u := range users {
		if !u.IsDir() {
			continue
		}
		files, err := filepath.Glob(filepath.Join(mailboxDir, u.Name(), "*.eml"))
		if err != nil {
			return err
		}
		sort.Strings(files)
		box := pop3test.Mailbox{User: u.Name(), Password: "demo-password-" + u.Name()}
		for i, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			box.Messages = append(box.Messages, pop3test.Message{UID: fmt.Sprintf("%s-%04d", u.Name(), i+1), Data: data})
		}
		boxes = append(boxes, box)
	}
	if len(boxes) == 0 {
		return fmt.Errorf("no mailboxes under %s", mailboxDir)
	}
	srv := pop3test.NewServer(boxes, &pop3test.ServerOptions{
		TLSConfig: pki.ServerConfig,
		Implicit:  true,
		Faults:    pop3test.Faults{SASLPlain: true},
	})
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer srv.Close()

	var csv strings.Builder
	csv.WriteString("source,password_file\n")
	for _, b := range boxes {
		pw := filepath.Join(state, b.User+".password")
		if err := os.WriteFile(pw, []byte(b.Password+"\n"), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(&csv, "pop3s://%s@%s,%s\n", b.User, addr, pw)
	}
	if err := os.WriteFile(filepath.Join(state, "accounts.csv"), []byte(csv.String()), 0o600); err != nil {
		return err
	}
	// ready is written last: its presence tells the demo script to go on.
	if err := os.WriteFile(filepath.Join(state, "ready"), []byte(addr.String()+"\n"), 0o600); err != nil {
		return err
	}
	log.Printf("serving %d mailboxes on pop3s://%s (CA: %s)", len(boxes), addr, pki.CAFile)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return nil
}
