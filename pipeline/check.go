package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sync/errgroup"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pop3"
)

// CheckResult is the preflight outcome of one account.
type CheckResult struct {
	Account string `json:"account"`
	Source  string `json:"source"`
	// TLS is the negotiated protocol version ("TLS 1.3"), or "none".
	TLS string `json:"tls"`
	// Capabilities are the CAPA names the server announced after login.
	Capabilities []string `json:"capabilities"`
	Pipelining   bool     `json:"pipelining"`
	UIDL         bool     `json:"uidl"`
	Messages     int      `json:"messages"`
	Bytes        int64    `json:"bytes"`
	// Error is why the account is not ready; empty when it is.
	Error string `json:"error,omitempty"`
	// Warnings are things that work but deserve a look.
	Warnings []string `json:"warnings,omitempty"`
}

// OK reports whether the account passed the preflight.
func (c *CheckResult) OK() bool { return c.Error == "" }

// Check connects to every account's server, negotiates TLS, logs in, and
// reads the capabilities and the mailbox size, downloading nothing and
// changing nothing (it ends each session with QUIT, having marked nothing
// deleted). It honours Jobs and PerHost and does not retry.
func Check(ctx context.Context, accounts []*config.Account, opts *Options) []*CheckResult {
	if opts == nil {
		opts = &Options{}
	}
	o := opts.withDefaults()
	r := &runner{opts: o, hosts: map[string]chan struct{}{}}
	out := make([]*CheckResult, len(accounts))
	var g errgroup.Group
	g.SetLimit(o.Jobs)
	for i, a := range accounts {
		g.Go(func() error {
			out[i] = r.check(ctx, a)
			return nil
		})
	}
	g.Wait()
	sort.Slice(out, func(a, b int) bool { return out[a].Account < out[b].Account })
	return out
}

func (r *runner) check(ctx context.Context, a *config.Account) *CheckResult {
	res := &CheckResult{Account: a.Name, Source: a.SourceURL(), TLS: "none"}
	ar := &accountRun{r: r, a: a, rep: &AccountReport{}}
	if err := ar.prepareSession(ctx); err != nil {
		res.Error = err.Error()
		return res
	}
	release, err := r.hostSlot(ctx, a.Host)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer release()
	c, err := ar.connect(ctx)
	if err != nil {
		res.Error = explain(err)
		return res
	}
	defer c.Close()
	if st, ok := c.TLSConnectionState(); ok {
		res.TLS = tls.VersionName(st.Version)
	}
	caps, err := c.Capabilities(ctx)
	if err != nil {
		res.Error = fmt.Sprintf("capa: %v", err)
		return res
	}
	for name := range caps {
		res.Capabilities = append(res.Capabilities, name)
	}
	sort.Strings(res.Capabilities)
	res.Pipelining = caps.Pipelining()
	if len(caps) == 0 {
		res.Warnings = append(res.Warnings, "the server has no CAPA: commands run one at a time")
	} else if !res.Pipelining {
		res.Warnings = append(res.Warnings, "no PIPELINING: one RETR at a time, slower on a distant server")
	}
	if res.Messages, res.Bytes, err = c.Stat(ctx); err != nil {
		res.Error = fmt.Sprintf("stat: %v", err)
		return res
	}
	uids, err := c.UIDL(ctx)
	var perr *pop3.Error
	switch {
	case err == nil:
		res.UIDL = true
		seen := make(map[string]bool, len(uids))
		dups := 0
		for _, u := range uids {
			if seen[u.UID] {
				dups++
			}
			seen[u.UID] = true
		}
		if dups > 0 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%d messages repeat another message's UIDL: they will be stored separately and never deleted", dups))
		}
	case errors.As(err, &perr):
		res.Warnings = append(res.Warnings, "no UIDL: messages will be keyed by their headers and size")
	default:
		res.Error = fmt.Sprintf("uidl: %v", err)
		return res
	}
	if a.InsecureSkipVerify {
		res.Warnings = append(res.Warnings, "certificate verification is off")
	}
	if err := c.Quit(ctx); err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("quit: %v", err))
	}
	return res
}
