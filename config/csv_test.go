package config

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// plantedSecret is a recognisable password that no error may ever show.
const plantedSecret = "pl4nted-S3CRET"

func TestCSVUnterminatedQuoteIsAnErrorNotAPanic(t *testing.T) {
	for _, csv := range []string{
		"source,password_env\npop3s://a@h,\"PW\n",
		"source,password_env\npop3s://a@h,PW\npop3s://b@h,\"PW\n\n\n",
		"source,password\npop3s://a@h,\"" + plantedSecret + "\n",
		"source,\"password_env\npop3s://a@h,PW\n",
	} {
		_, err := LoadCSV(strings.NewReader(csv), "a.csv", defaults)
		if err == nil || !strings.Contains(err.Error(), "quoted field is not closed") {
			t.Errorf("LoadCSV(%q) error = %v, want a quote error", csv, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "a.csv:") || strings.Contains(err.Error(), plantedSecret) {
			t.Errorf("LoadCSV(%q) error = %v, want a.csv:LINE and no content", csv, err)
		}
	}
	_, err := LoadCSV(strings.NewReader("source,password_env\npop3s://a@h,PW\npop3s://b@h,\"PW\n"), "a.csv", defaults)
	if err == nil || !strings.HasPrefix(err.Error(), "a.csv:3:") {
		t.Errorf("error = %v, want it on line 3, where the quote opens", err)
	}
}

func TestCSVAcceptsUTF8BOM(t *testing.T) {
	csv := "\xef\xbb\xbfsource,password_env\r\npop3s://alice@h,PW\r\n"
	as, err := LoadCSV(strings.NewReader(csv), "a.csv", defaults)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].User != "alice" || as[0].Password.Env != "PW" || as[0].Origin != "a.csv:2" {
		t.Fatalf("got %+v", as)
	}
	// A BOM before a quoted first column name too.
	if _, err := LoadCSV(strings.NewReader("\xef\xbb\xbf\"source\",password_env\npop3s://alice@h,PW\n"), "a.csv", defaults); err != nil {
		t.Fatalf("BOM then a quoted header: %v", err)
	}
	// Only at the start: a BOM inside is text, and an unknown column.
	if _, err := LoadCSV(strings.NewReader("source,\xef\xbb\xbfpassword_env\npop3s://alice@h,PW\n"), "a.csv", defaults); err == nil {
		t.Fatal("a BOM in the middle of the header was accepted")
	}
}

func TestCSVRefusesDuplicateColumn(t *testing.T) {
	for _, c := range []struct{ csv, want string }{
		{"host,user,port,User,password_env\nh,a,1,b,PW\n", `a.csv:1: column "user" appears twice, as column 2 (B) and column 4 (D)`},
		{"source,password_env,to,password_env\npop3s://a@h,PW,maildir:/x,PW2\n", `column "password_env" appears twice, as column 2 (B) and column 4 (D)`},
		{"# comment\nsource, SOURCE ,password_env\n", `a.csv:2: column "source" appears twice, as column 1 (A) and column 2 (B)`},
	} {
		_, err := LoadCSV(strings.NewReader(c.csv), "a.csv", defaults)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("LoadCSV(%q) error = %v, want %q", c.csv, err, c.want)
		}
	}
}

func TestCSVAcceptsCRLFAndTrailingEmptyLines(t *testing.T) {
	for _, csv := range []string{
		"source,password_env\r\npop3s://alice@h,PW\r\npop3s://bob@h,PW\r\n\r\n\r\n",
		"source,password_env\npop3s://alice@h,PW\npop3s://bob@h,PW",
		"\n\nsource,password_env\n\npop3s://alice@h,PW\n# bob next\npop3s://bob@h,PW\n\n",
		"source,password_env\npop3s://alice@h,PW\npop3s://bob@h,PW\n,\n , \n",
	} {
		as, err := LoadCSV(strings.NewReader(csv), "a.csv", defaults)
		if err != nil || len(as) != 2 || as[0].User != "alice" || as[1].User != "bob" {
			t.Errorf("LoadCSV(%q) = %v, %v; want alice and bob", csv, as, err)
		}
	}
	as, err := LoadCSV(strings.NewReader("\n# c\nsource,password_env\n\npop3s://alice@h,PW\n"), "a.csv", defaults)
	if err != nil || as[0].Origin != "a.csv:5" {
		t.Errorf("origin after blank and comment lines = %v, %v; want a.csv:5", as, err)
	}
}

func TestCSVSkipsRowsOfEmptyCells(t *testing.T) {
	csv := "source,password_env,to\npop3s://alice@h,PW,\n,,\n  ,  ,  \n,\n"
	as, err := LoadCSV(strings.NewReader(csv), "a.csv", defaults)
	if err != nil || len(as) != 1 {
		t.Fatalf("got %v, %v; want one account", as, err)
	}
}

func TestCSVAcceptsEmptyUnnamedColumns(t *testing.T) {
	csv := "source,password_env,,\npop3s://alice@h,PW,,\n"
	if _, err := LoadCSV(strings.NewReader(csv), "a.csv", defaults); err != nil {
		t.Fatalf("trailing unnamed empty columns: %v", err)
	}
	csv = "source,password_env,,\npop3s://alice@h,PW,," + plantedSecret + "\n"
	_, err := LoadCSV(strings.NewReader(csv), "a.csv", defaults)
	if err == nil || !strings.Contains(err.Error(), "a.csv:2: column 4 (D) has a value but no name") || strings.Contains(err.Error(), plantedSecret) {
		t.Fatalf("value in an unnamed column: %v", err)
	}
}

// TestCSVInvalidInputGivesFileLineErrors: each bad file gets an error that
// names the file (and the line, when there is one) and what to do.
func TestCSVInvalidInputGivesFileLineErrors(t *testing.T) {
	cases := []struct{ name, csv, want string }{
		{"empty", "", "a.csv: empty file: want a header row"},
		{"only a BOM", "\xef\xbb\xbf", "a.csv: empty file"},
		{"only comments", "# nothing\n\n", "a.csv: empty file"},
		{"header only", "source,password_env\n", "a.csv:1: no accounts after the header row; add one row"},
		{"header and blank rows", "source,password_env\n,\n\n", "a.csv:1: no accounts"},
		{"too few fields", "source,password_env,to\npop3s://a@h,PW\n", "a.csv:2: 2 fields, the header has 3; quote a value that holds a comma"},
		{"too many fields", "source,password_env\npop3s://a@h,PW,x\n", "a.csv:2: 3 fields, the header has 2"},
		{"bare quote", "source,password_env\npop3s://a@h,P\"W\n", `a.csv:2: a " in a field that does not start with one (character 14); put the whole field in double quotes`},
		{"text after closing quote", "source,password_env\npop3s://a@h,\"PW\"x\n", "a.csv:2: a quoted field is not closed properly"},
		{"unterminated quote runs to the end", "source,password_env\n\"pop3s://a@h,PW\nx\ny\n", "a.csv:2: a quoted field is not closed properly (line 4, "},
		{"unknown column", "source,pasword_env\nx,y\n", `a.csv:1: unknown column "pasword_env" (column 2 (B)); did you mean "password_env"?`},
		{"unknown column, no suggestion", "source,email,password_env\nx,y,z\n", `unknown column "email" (column 2 (B)); known: name, source`},
		{"not a header", "pop3s://a@h,PW\n", "a.csv:1: this is not a header row: none of its 2 fields is a column name"},
		{"bare CR line ends", "source,password_env,to\rpop3s://a@h,PW,maildir:/x\r", "a.csv:1: the header row holds a line break in column 3 (C)"},
		{"duplicate account", "source,password_env\npop3s://a@h,PW\npop3s://a@h,PW\n", "a.csv:3: account a@h is already defined at a.csv:2"},
		{"shared destination", "source,password_env,to\npop3s://a@h,PW,maildir:/x\npop3s://b@h,PW,maildir:/x\n", "a.csv:3: account b@h writes to maildir:/x"},
		{"bad host", "host,user,password_env\nmail example.org,a,PW\n", `a.csv:2: host "mail example.org" is not a host name`},
		{"host with NUL", "host,user,password_env\nh\x00x,a,PW\n", "a.csv:2: host"},
		{"name with line break", "source,name,password_env\npop3s://a@h,\"a\nb\",PW\n", "a.csv:2: name \"a\\nb\" contains a control character"},
		{"user with NUL", "host,user,password_env\nh,a\x00b,PW\n", `a.csv:2: user "a\x00b" contains a control character`},
		{"short row", "source,password_env\npop3s://a@h\n", "a.csv:2"},
		{"bad url", "source,password_env\nhttp://a@h,PW\n", "a.csv:2: source"},
		{"two secrets", "source,password_env,password_file\npop3s://a@h,PW,/f\n", "only one of"},
		{"source and host", "source,host,password_env\npop3s://a@h,h,PW\n", "either source or host"},
		{"bad bool", "source,password_env,insecure_skip_verify\npop3s://a@h,PW,maybe\n", "not true or false"},
		{"bad security", "host,user,security,password_env\nh,a,ssl,PW\n", "want tls, starttls or plain"},
		{"plain without confirm", "host,user,security,password_env\nh,a,plain,PW\n", "insecure_plaintext"},
		{"bad auth", "source,password_env,auth\npop3s://a@h,PW,CRAM-MD5\n", "auth mechanism"},
		{"bad dest", "source,password_env,to\npop3s://a@h,PW,ftp:/x\n", "unknown kind"},
		{"bad port", "host,port,user,password_env\nh,99999,a,PW\n", `a.csv:2: bad port "99999"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadCSV(strings.NewReader(c.csv), "a.csv", defaults)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// TestCSVErrorsNeverShowAPasswordCell: whatever is wrong with a row, or
// with the file, a password cell is not quoted.
func TestCSVErrorsNeverShowAPasswordCell(t *testing.T) {
	s := plantedSecret
	for _, csv := range []string{
		"source,password\npop3s://a@h," + s + ",x\n",
		"source,password\npop3s://a@h\n" + s + "\n",
		"source,password,password_env\npop3s://a@h," + s + ",PW\n",
		"source,password,security\npop3s://a@h," + s + ",tls\n",
		"host,user,password,security\nh,a," + s + ",ssl\n",
		"host,user,password\nh,a," + s + "\"\n",
		"host,user,password\nh,a,\"" + s + "\"x\n",
		"host,user,password,to\nh,a," + s + ",\n",
		"host,user,password,to\nh,a,\"" + s[:4] + "\n" + s[4:] + "\",maildir:/x\n",
		"source,to_password,to\npop3s://a@h," + s + ",imaps://{nope}@h/INBOX\n",
		"source,password\npop3s://a@h," + s + "\npop3s://a@h," + s + "\n",
		s + "\n",
		"\xef\xbb\xbf" + s + "\n",
		"source,password\rpop3s://a@h," + s + "\r",
		"source,\"password\npop3s://a@h," + s + "\n",
	} {
		// No defaults: a row that is otherwise fine fails for its
		// missing destination.
		_, err := LoadCSV(strings.NewReader(csv), "a.csv", Defaults{Destinations: testDests})
		if err == nil {
			t.Errorf("LoadCSV(%q) accepted", csv)
			continue
		}
		if strings.Contains(err.Error(), s) || strings.Contains(err.Error(), "pl4nted") || strings.Contains(err.Error(), s[4:]) {
			t.Errorf("LoadCSV(%q) error shows the password: %v", csv, err)
		}
	}
}

// TestCSVTooLargeIsAnError: a huge file (a wrong --accounts) fails with a
// clear error once past the limit rather than being read whole.
func TestCSVTooLargeIsAnError(t *testing.T) {
	r := io.MultiReader(strings.NewReader("source,password_env\npop3s://a@h,"), &endless{b: 'x'})
	_, err := LoadCSV(r, "a.csv", defaults)
	if err == nil || !strings.Contains(err.Error(), "a.csv: larger than 64 MiB") {
		t.Fatalf("error = %v", err)
	}
}

// endless reads as an endless run of b.
type endless struct{ b byte }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = e.b
	}
	return len(p), nil
}

func TestLimitedReader(t *testing.T) {
	for _, c := range []struct {
		size, limit int
		wantErr     error
	}{{10, 10, nil}, {9, 10, nil}, {11, 10, errTooLarge}, {0, 0, nil}, {1, 0, errTooLarge}} {
		b, err := io.ReadAll(&limitedReader{r: bytes.NewReader(make([]byte, c.size)), n: int64(c.limit)})
		if err != c.wantErr || (err == nil && len(b) != c.size) {
			t.Errorf("size %d, limit %d: %d bytes, %v; want %v", c.size, c.limit, len(b), err, c.wantErr)
		}
	}
}

func TestSpreadsheetColumn(t *testing.T) {
	for i, want := range map[int]string{0: "1 (A)", 1: "2 (B)", 25: "26 (Z)", 26: "27 (AA)", 27: "28 (AB)", 701: "702 (ZZ)", 702: "703 (AAA)"} {
		if got := spreadsheetColumn(i); got != want {
			t.Errorf("spreadsheetColumn(%d) = %q, want %q", i, got, want)
		}
	}
}
