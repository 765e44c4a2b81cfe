package main

import (
	"fmt"
	"sync"

	"github.com/schollz/progressbar/v3"

	"github.com/popmigrate/popmigrate/pipeline"
)

// progress shows a run's progress on stderr: a bar on a terminal, one
// line per finished account otherwise.
type progress struct {
	mu       sync.Mutex
	io       *iostreams
	bar      *progressbar.ProgressBar
	lines    bool
	accounts int
	done     int
	total    int64
}

func newProgress(io *iostreams, bar bool, accounts int, lines bool) *progress {
	p := &progress{io: io, accounts: accounts, lines: lines}
	if bar {
		p.bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(io.Err),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription(p.describe()),
			progressbar.OptionThrottle(100_000_000),
			progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
}

func (p *progress) describe() string {
	return fmt.Sprintf("accounts %d/%d", p.done, p.accounts)
}

func (p *progress) AccountStart(account string, messages int, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total += bytes
	if p.bar != nil {
		p.bar.ChangeMax64(p.total)
	}
}

func (p *progress) MessageDone(account string, bytes int64) {
	if p.bar != nil {
		p.mu.Lock()
		p.bar.Add64(bytes)
		p.mu.Unlock()
	}
}

func (p *progress) AccountDone(account string, r *pipeline.AccountReport) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if p.bar != nil {
		p.bar.Describe(p.describe())
	}
	if p.lines {
		status := "ok"
		if !r.Whole {
			status = "NOT WHOLE"
			if r.Error != "" {
				status += ": " + r.Error
			}
		}
		adopted := ""
		if r.Adopted > 0 {
			adopted = fmt.Sprintf(", adopted %d", r.Adopted)
		}
		fmt.Fprintf(p.io.Err, "popmigrate: %s: %d on server, stored %d, already stored %d%s, failed %d: %s\n",
			account, r.ServerMessages, r.Stored, r.SkippedAlreadyStored, adopted, r.Failed, status)
	}
}

// Finish removes the bar.
func (p *progress) Finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}

var _ pipeline.Progress = (*progress)(nil)
