package config

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxCSVSize bounds an accounts CSV: some hundred thousand accounts, far
// more than a run handles, and a wrong file (a mailbox, a disk image)
// fails fast instead of filling the memory.
const maxCSVSize = 64 << 20

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// LoadCSV reads accounts from a CSV file with a header row. Columns
// (order free, unknown ones refused, names not case-sensitive, each at
// most once): source (pop3s://USER@HOST[:PORT]) or host, port, user,
// security (tls|starttls|plain); password_env, password_file,
// password_command or password; oauth2_token_env, oauth2_token_file or
// oauth2_token_command, or oauth2_provider (microsoft365|google) with
// oauth2_tenant, oauth2_client_id, oauth2_client_secret_env|_file|_command
// or oauth2_client_cert (Microsoft), oauth2_service_account (Google); auth;
// ca_file; name; insecure_skip_verify,
// insecure_plaintext (true/false); to (destinations, several separated by
// spaces); and the to_password_* and to_oauth2_token_* of IMAP
// destinations. Empty cells take the defaults. Lines starting with '#' are
// comments; empty lines and rows of empty cells are skipped. name is used
// in errors ("accounts.csv").
//
// Every error names the file and line and says what to fix; none quotes
// a password cell. The accounts are checked together with Validate. When r
// is a file (it has a Stat method) that holds passwords and that group or
// others can read, the accounts carry a warning for Warnings.
func LoadCSV(r io.Reader, name string, d Defaults) ([]*Account, error) {
	br := bufio.NewReader(&limitedReader{r: r, n: maxCSVSize})
	// QUIRK: spreadsheet programs ("CSV UTF-8" in Excel) start the file
	// with a UTF-8 byte order mark; it is not part of the first column's
	// name.
	if b, err := br.Peek(len(utf8BOM)); err == nil && bytes.Equal(b, utf8BOM) {
		br.Discard(len(utf8BOM))
	}
	cr := csv.NewReader(br)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file: want a header row such as source,password_env,to and one row per account", name)
	}
	if err != nil {
		return nil, csvReadError(name, err)
	}
	hline, _ := cr.FieldPos(0)
	cols, err := csvHeader(fmt.Sprintf("%s:%d", name, hline), header)
	if err != nil {
		return nil, err
	}
	var out []*Account
	inline := false
	share := newTokenShare()
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		// The error comes first: FieldPos has no position to give for a
		// record that did not parse.
		if err != nil {
			return nil, csvReadError(name, err)
		}
		line, _ := cr.FieldPos(0)
		origin := fmt.Sprintf("%s:%d", name, line)
		// QUIRK: spreadsheet programs write rows of empty cells (",,,")
		// below the data; they are skipped like empty lines.
		if blankRecord(rec) {
			continue
		}
		if len(rec) != len(cols) {
			return nil, fmt.Errorf("%s: %d fields, the header has %d; quote a value that holds a comma (\"a,b\"), and give each row all %d columns (an empty cell takes the default)", origin, len(rec), len(cols), len(cols))
		}
		in := accountInput{origin: origin}
		for i, col := range cols {
			v := strings.TrimSpace(rec[i])
			if v == "" {
				continue
			}
			if col == "" {
				return nil, fmt.Errorf("%s: column %s has a value but no name in the header; name the column or empty it", origin, spreadsheetColumn(i))
			}
			if err := in.set(col, v); err != nil {
				return nil, fmt.Errorf("%s: column %s: %w", origin, col, err)
			}
		}
		if err := in.checkSecrets(); err != nil {
			return nil, err
		}
		inline = inline || in.hasInlineSecret()
		a, err := in.build(d, share)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s:%d: no accounts after the header row; add one row per account", name, hline)
	}
	if err := Validate(out); err != nil {
		return nil, err
	}
	if inline {
		setFileWarning(out, looseFileWarning(r, name, "accounts file", " holds passwords and"))
	}
	return out, nil
}

// csvHeader checks the header row and returns its column names, lower
// case; an unnamed column is "". where is "FILE:LINE".
func csvHeader(where string, rec []string) ([]string, error) {
	cols := make([]string, len(rec))
	known := 0
	for i, h := range rec {
		if strings.ContainsAny(h, "\r\n") {
			return nil, fmt.Errorf("%s: the header row holds a line break in column %s: lines end with a bare CR (an old Mac format), or a quote is not closed; save the file with LF or CRLF line endings", where, spreadsheetColumn(i))
		}
		cols[i] = strings.ToLower(strings.TrimSpace(h))
		if csvColumns[cols[i]] {
			known++
		}
	}
	if known == 0 {
		return nil, fmt.Errorf("%s: this is not a header row: none of its %d fields is a column name (the text is not shown, since this may not be an accounts CSV at all); the first line that is not a # comment names the columns, e.g. source,password_env,to", where, len(rec))
	}
	seen := make(map[string]int, len(cols))
	for i, c := range cols {
		if c == "" {
			// QUIRK: spreadsheet programs export trailing unnamed
			// columns ("source,to,,"); they are accepted while empty.
			continue
		}
		if !csvColumns[c] {
			return nil, fmt.Errorf("%s: %s", where, unknownName("column", strings.TrimSpace(rec[i]), "column "+spreadsheetColumn(i), true, columnNames))
		}
		if j, dup := seen[c]; dup {
			return nil, fmt.Errorf("%s: column %q appears twice, as column %s and column %s (column names are not case-sensitive); delete or rename one of them", where, c, spreadsheetColumn(j), spreadsheetColumn(i))
		}
		seen[c] = i
	}
	return cols, nil
}

// csvReadError turns an error of the CSV reader into "FILE:LINE: what is
// wrong; what to do". It never quotes the file's content.
func csvReadError(name string, err error) error {
	if errors.Is(err, errTooLarge) {
		return fmt.Errorf("%s: larger than %d MiB: is it the accounts CSV? Split a longer list into several files", name, maxCSVSize>>20)
	}
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", name, err)
	}
	where := fmt.Sprintf("%s:%d", name, pe.StartLine)
	at := fmt.Sprintf("character %d", pe.Column)
	if pe.Line != pe.StartLine {
		at = fmt.Sprintf("line %d, character %d", pe.Line, pe.Column)
	}
	switch {
	case errors.Is(pe.Err, csv.ErrBareQuote):
		return fmt.Errorf(`%s: a " in a field that does not start with one (%s); put the whole field in double quotes and write each " inside it twice, e.g. "a""b"`, where, at)
	case errors.Is(pe.Err, csv.ErrQuote):
		return fmt.Errorf(`%s: a quoted field is not closed properly (%s): its closing " is missing, or text follows it; close the quote, and write each " inside a quoted field twice ("")`, where, at)
	}
	return fmt.Errorf("%s: %v", where, pe.Err)
}

// blankRecord reports whether every field of rec is empty or spaces.
func blankRecord(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

// spreadsheetColumn names the column of index i (0-based) as a
// spreadsheet shows it: "2 (B)", "28 (AB)".
func spreadsheetColumn(i int) string {
	var letters []byte
	for n := i + 1; n > 0; n = (n - 1) / 26 {
		letters = append([]byte{byte('A' + (n-1)%26)}, letters...)
	}
	return fmt.Sprintf("%d (%s)", i+1, letters)
}
