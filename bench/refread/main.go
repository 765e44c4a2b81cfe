// Command refread is the reference reader of popmigrate's benchmark: the
// pipelined, bytes-discarding POP3S client that measures what the server
// can serve. It stores nothing, checks nothing but counts, and keeps no
// state, so its time is what any POP3 client needs at least against that
// server over that link.
//
// For each account it connects with implicit TLS (trusting -ca-file), logs
// in with USER and PASS (the password read from a file), sends LIST, then
// sends every RETR at once (a writer goroutine; TCP flow control is the
// window), reads each multi-line answer to its terminating ".\r\n" and
// discards the bytes, and QUITs. It fails unless every message LIST
// announced arrived, with the size LIST gave (octets of the unstuffed
// message, CRLF line ends).
//
//	refread -addr 127.0.0.1:995 -ca-file ca.pem -accounts accounts.csv -concurrency 8
//
// The accounts file has one account a line, "user,password_file" (a first
// line "user,password_file" is skipped). -concurrency accounts are read at
// once (1: one after another). On success it prints one line,
//
//	accounts=N messages=M bytes=B lines=L
//
// B is the sum of the unstuffed messages with CRLF line ends (what LIST
// announced) and L their lines, so B-L is their size with LF line ends.
// Every read and write has a deadline (-timeout per operation).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds on what the server may send.
const (
	maxStatusLine = 4 << 10   // a status or listing line
	maxListing    = 1_000_000 // lines of a LIST answer
	readBuffer    = 64 << 10
)

type account struct{ user, passwordFile string }

type counts struct{ messages, bytes, lines int64 }

func main() {
	addr := flag.String("addr", "", "POP3S server, host:port (implicit TLS)")
	caFile := flag.String("ca-file", "", "PEM file of the CA to trust (default: the system roots)")
	accountsFile := flag.String("accounts", "", `file of accounts, one "user,password_file" a line`)
	concurrency := flag.Int("concurrency", 1, "accounts read at once")
	timeout := flag.Duration("timeout", time.Minute, "deadline of each read and write")
	flag.Parse()
	if *addr == "" || *accountsFile == "" || *concurrency < 1 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: refread -addr HOST:PORT [-ca-file FILE] -accounts FILE [-concurrency N] [-timeout D]")
		os.Exit(2)
	}
	if err := run(os.Stdout, *addr, *caFile, *accountsFile, *concurrency, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "refread:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, addr, caFile, accountsFile string, concurrency int, timeout time.Duration) error {
	accounts, err := readAccounts(accountsFile)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no PEM certificate", caFile)
		}
	}
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		total    counts
		firstErr error
	)
	for range min(concurrency, len(accounts)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(accounts) {
					return
				}
				c, err := readAccount(addr, cfg, accounts[i], timeout)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("account %s: %w", accounts[i].user, err)
				}
				total.messages += c.messages
				total.bytes += c.bytes
				total.lines += c.lines
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	_, err = fmt.Fprintf(out, "accounts=%d messages=%d bytes=%d lines=%d\n", len(accounts), total.messages, total.bytes, total.lines)
	return err
}

func readAccounts(path string) ([]account, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []account
	for n, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		user, pw, ok := strings.Cut(strings.TrimSpace(line), ",")
		if n == 0 && user == "user" {
			continue
		}
		if !ok || user == "" || pw == "" {
			return nil, fmt.Errorf("%s:%d: want user,password_file", path, n+1)
		}
		out = append(out, account{user, pw})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no accounts", path)
	}
	return out, nil
}

// conn is one POP3 session with a deadline on every read and write.
type conn struct {
	c       net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

func (c *conn) line() ([]byte, error) {
	c.c.SetReadDeadline(time.Now().Add(c.timeout))
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxStatusLine {
		return nil, errors.New("status line too long")
	}
	return line, err
}

func (c *conn) status() ([]byte, error) {
	line, err := c.line()
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(line, []byte("+OK")) {
		return nil, fmt.Errorf("server: %q", bytes.TrimSpace(line))
	}
	return line, nil
}

func (c *conn) cmd(format string, args ...any) ([]byte, error) {
	c.c.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := fmt.Fprintf(c.c, format+"\r\n", args...); err != nil {
		return nil, err
	}
	return c.status()
}

func readAccount(addr string, cfg *tls.Config, a account, timeout time.Duration) (counts, error) {
	var got counts
	pw, err := os.ReadFile(a.passwordFile)
	if err != nil {
		return got, err
	}
	password := strings.TrimRight(string(pw), "\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return got, err
	}
	defer nc.Close()
	c := &conn{c: nc, r: bufio.NewReaderSize(nc, readBuffer), timeout: timeout}
	if _, err := c.status(); err != nil {
		return got, fmt.Errorf("greeting: %w", err)
	}
	if _, err := c.cmd("USER %s", a.user); err != nil {
		return got, fmt.Errorf("USER: %w", err)
	}
	if _, err := c.cmd("PASS %s", password); err != nil {
		return got, errors.New("PASS refused")
	}
	if _, err := c.cmd("LIST"); err != nil {
		return got, fmt.Errorf("LIST: %w", err)
	}
	var sizes []int64
	var want int64
	for {
		line, err := c.line()
		if err != nil {
			return got, fmt.Errorf("LIST: %w", err)
		}
		if string(line) == ".\r\n" {
			break
		}
		f := strings.Fields(string(line))
		if len(f) != 2 || len(sizes) >= maxListing {
			return got, fmt.Errorf("LIST: line %q", line)
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || f[0] != strconv.Itoa(len(sizes)+1) {
			return got, fmt.Errorf("LIST: line %q", line)
		}
		sizes = append(sizes, size)
		want += size
	}

	// Every RETR at once; the answers are read meanwhile. QUIT waits for
	// the last answer: with QUIT pipelined behind the RETRs, Dovecot 2.3
	// over TLS once closed the connection before the end of the last one.
	werr := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(nc, 32<<10)
		nc.SetWriteDeadline(time.Now().Add(timeout * time.Duration(1+len(sizes)/1000)))
		for i := range sizes {
			fmt.Fprintf(w, "RETR %d\r\n", i+1)
		}
		werr <- w.Flush()
	}()
	for i, size := range sizes {
		if _, err := c.status(); err != nil {
			return got, fmt.Errorf("RETR %d: %w", i+1, err)
		}
		n, lines, err := c.discardBody()
		if err != nil {
			return got, fmt.Errorf("RETR %d: %w", i+1, err)
		}
		if n != size {
			return got, fmt.Errorf("RETR %d: %d octets, LIST said %d", i+1, n, size)
		}
		got.messages++
		got.bytes += n
		got.lines += lines
	}
	if err := <-werr; err != nil {
		return got, fmt.Errorf("write: %w", err)
	}
	if _, err := c.cmd("QUIT"); err != nil {
		return got, fmt.Errorf("QUIT: %w", err)
	}
	if got.bytes != want {
		return got, fmt.Errorf("read %d octets, LIST said %d", got.bytes, want)
	}
	return got, nil
}

// discardBody reads a multi-line answer to its ".\r\n" and returns the
// octets of the unstuffed message (CRLF line ends) and its lines.
func (c *conn) discardBody() (n, lines int64, err error) {
	atStart := true
	for {
		c.c.SetReadDeadline(time.Now().Add(c.timeout))
		chunk, err := c.r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return n, lines, err
		}
		if atStart && len(chunk) > 0 && chunk[0] == '.' {
			if string(chunk) == ".\r\n" {
				return n, lines, nil
			}
			chunk = chunk[1:] // dot-stuffed
		}
		n += int64(len(chunk))
		atStart = err == nil // a full buffer is the middle of a line
		if atStart {
			lines++
		}
	}
}
