package mbox

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/internal/mailhdr"
)

// MaxHeaderBytes bounds how much of the start of a message Put reads to find
// the sender and date of its From_ line. Header fields past it are ignored.
const MaxHeaderBytes = 256 << 10

// DefaultSender is the sender of the From_ line of a message without a
// Return-Path, or with the null reverse-path "<>" (a bounce).
const DefaultSender = "MAILER-DAEMON"

const (
	maxSenderLen = 256      // longer senders are cut: the From_ line stays short
	maxFromLine  = 4 << 10  // longest From_ line Open and Entries accept
	headStep     = 16 << 10 // bytes read per step while looking for the header end
)

// fromLine returns the From_ line of the message that starts with head,
// without its LF: "From SENDER DATE", with SENDER from Return-Path and
// DATE in asctime form, in UTC (see messageDate).
func fromLine(head []byte, received time.Time) string {
	h := mailhdr.Read(head)
	return "From " + envelopeSender(h) + " " + messageDate(h, received).Format(time.ANSIC)
}

// envelopeSender returns the address of h's Return-Path with its angle
// brackets removed, or DefaultSender when there is none or it is "<>".
// Bytes that would break the From_ line (white space, control characters,
// 8-bit bytes) become '_', and the result is at most maxSenderLen bytes.
func envelopeSender(h mailhdr.Header) string {
	v := h.Get("Return-Path")
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return DefaultSender
	}
	if len(v) > maxSenderLen {
		v = v[:maxSenderLen]
	}
	b := []byte(v)
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}

// epoch is the From_ line date of a message with no usable date and no
// download time.
var epoch = time.Unix(0, 0).UTC()

// messageDate returns the date of the From_ line, taken from the message
// itself, never from the clock: the date mailhdr's FromReceived policy
// gives (the newest usable Received date, else the Date field, else
// received: when popmigrate downloaded the message), else the Unix epoch.
// It is the date every destination gives the message (the IMAP
// INTERNALDATE, the .eml name).
func messageDate(h mailhdr.Header, received time.Time) time.Time {
	if t := h.Date(mailhdr.FromReceived, received); !t.IsZero() {
		return t
	}
	return epoch
}

// readHead returns the start of body up to the end of its header section
// (an empty line), at most MaxHeaderBytes, using buf to read.
func readHead(body exporters.Body, buf []byte) ([]byte, error) {
	size := body.Size()
	limit := min(size, MaxHeaderBytes)
	var head []byte
	for int64(len(head)) < limit {
		want := min(int64(headStep), limit-int64(len(head)), int64(len(buf)))
		n, err := body.ReadAt(buf[:want], int64(len(head)))
		from := max(len(head)-1, 0)
		head = append(head, buf[:n]...)
		switch {
		case err == io.EOF && int64(len(head)) < limit:
			return nil, fmt.Errorf("%w: %d of %d bytes", exporters.ErrShortBody, len(head), size)
		case err != nil && err != io.EOF:
			return nil, fmt.Errorf("read body at offset %d: %w", len(head), err)
		case n == 0:
			return nil, fmt.Errorf("read body at offset %d: no progress", len(head))
		}
		if head[0] == '\n' || bytes.Contains(head[from:], []byte("\n\n")) {
			break
		}
	}
	return head, nil
}
