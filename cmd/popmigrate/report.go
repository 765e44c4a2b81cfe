package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/popmigrate/popmigrate/internal/units"
	"github.com/popmigrate/popmigrate/pipeline"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(fmt.Sprintf("{%q:%q}", "error", err.Error()))
	}
	return b
}

// printRunReport writes the human report of a run: one row per account,
// the problems under it, and the totals.
func printRunReport(w io.Writer, rep *pipeline.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tON SERVER\tSTORED\tALREADY STORED\tADOPTED\tFAILED\tSTATUS")
	for _, a := range rep.Accounts {
		status := "ok"
		if !a.Whole {
			status = "NOT WHOLE"
		}
		onServer := fmt.Sprintf("%d (%s)", a.ServerMessages, units.Bytes(a.ServerBytes))
		switch {
		case a.DoneBy != "":
			// Another worker on the journal finished it during this
			// run; its own report has the counts.
			onServer, status = "-", "ok, done by "+a.DoneBy
		case !a.ServerListed:
			onServer = "unknown"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", a.Account, onServer, a.Stored, a.SkippedAlreadyStored, a.Adopted, a.Failed, status)
	}
	tw.Flush()
	for _, a := range rep.Accounts {
		if a.Error != "" {
			fmt.Fprintf(w, "! %s: %s\n", a.Account, a.Error)
		}
		for _, f := range a.Failures {
			fmt.Fprintf(w, "! %s: message %d (uidl %q): %s\n", a.Account, f.ID, f.UIDL, f.Error)
		}
		for _, q := range a.Quarantined {
			fmt.Fprintf(w, "! %s: message %q: refused by %s, kept in %s\n", a.Account, q.UIDL, q.Destination, q.Path)
		}
		for _, m := range a.SizeMismatches {
			if m.Suspect {
				fmt.Fprintf(w, "! %s: message %d (uidl %q): SUSPECT: LIST said %d bytes, RETR delivered %d; stored as delivered and kept on the server "+
					"(the copy may be incomplete; --delete skips it unless --delete-suspect)\n", a.Account, m.ID, m.UIDL, m.Listed, m.Received)
				continue
			}
			fmt.Fprintf(w, "* %s: message %d (uidl %q): LIST said %d bytes, RETR delivered %d (stored as delivered)\n", a.Account, m.ID, m.UIDL, m.Listed, m.Received)
		}
		if a.NoUIDL {
			fmt.Fprintf(w, "* %s: the server has no UIDL; messages were keyed by their headers and size\n", a.Account)
		}
		if a.OverlongUIDLs > 0 {
			fmt.Fprintf(w, "* %s: %d messages have a UIDL too long to keep; they were keyed by their headers and size, and purge never deletes them\n", a.Account, a.OverlongUIDLs)
		}
		if a.Adopted > 0 {
			fmt.Fprintf(w, "* %s: %d messages were fetched by another client before (journal import): not downloaded, and never deleted from the server\n", a.Account, a.Adopted)
		}
		if a.DuplicateUIDLs > 0 {
			fmt.Fprintf(w, "* %s: %d messages repeat another message's UIDL; each was stored separately\n", a.Account, a.DuplicateUIDLs)
		}
	}
	t := rep.Totals
	rate := ""
	if rep.Duration > 0 && t.Stored > 0 {
		rate = fmt.Sprintf(" (%.0f msg/s, %s/s)", float64(t.Stored)/rep.Duration, units.Bytes(int64(float64(t.StoredBytes)/rep.Duration)))
	}
	fmt.Fprintf(w, "\n%d accounts (%d not whole): %d messages on the servers; stored %d (%s), already stored %d, adopted %d, failed %d; %.1fs%s\n",
		t.Accounts, t.AccountsFailed, t.ServerMessages, t.Stored, units.Bytes(t.StoredBytes), t.SkippedAlreadyStored, t.Adopted, t.Failed, rep.Duration, rate)
}
