package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters/location"
	"github.com/popmigrate/popmigrate/pop3"
)

// CheckResult is the preflight outcome of one account.
type CheckResult struct {
	Account string `json:"account"`
	Source  string `json:"source"`
	// TLS is the negotiated protocol version ("TLS 1.3"), or "none".
	TLS string `json:"tls"`
	// Certificate describes the server's certificate; nil without TLS.
	Certificate *CertInfo `json:"certificate,omitempty"`
	// CapabilitiesBeforeLogin and Capabilities are the CAPA names the
	// server announced before and after login.
	CapabilitiesBeforeLogin []string `json:"capabilities_before_login"`
	Capabilities            []string `json:"capabilities"`
	Pipelining              bool     `json:"pipelining"`
	// Auth is the mechanism the login used ("PLAIN", "XOAUTH2-2STEP"),
	// what run would use too.
	Auth string `json:"auth"`
	UIDL bool   `json:"uidl"`
	// LoginDelay and Expire are the CAPA LOGIN-DELAY and EXPIRE values
	// (RFC 2449 section 6.5 and 6.7) after login, "" when not announced.
	LoginDelay string `json:"login_delay,omitempty"`
	Expire     string `json:"expire,omitempty"`
	Messages   int    `json:"messages"`
	Bytes      int64  `json:"bytes"`
	// Largest is the size of the largest message (LIST).
	Largest int64 `json:"largest"`
	// Destinations are the checks of the account's destinations, when
	// it has any.
	Destinations []DestinationCheck `json:"destinations,omitempty"`
	// Error is why the account is not ready; empty when it is.
	Error string `json:"error,omitempty"`
	// Warnings are things that work but deserve a look.
	Warnings []string `json:"warnings,omitempty"`
}

// CertInfo describes a server certificate.
type CertInfo struct {
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
}

// DestinationCheck is the preflight of one destination.
type DestinationCheck struct {
	Destination string   `json:"destination"`
	Error       string   `json:"error,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
}

// certWarnDays is how soon a certificate's expiry is warned about.
const certWarnDays = 14

// OK reports whether the account passed the preflight.
func (c *CheckResult) OK() bool { return c.Error == "" }

// Check connects to every account's server, negotiates TLS (and reads
// the certificate), reads the capabilities before and after login, the
// mailbox size and its largest message, and checks every destination of
// the account through Options.Destinations (writable, room enough, an IMAP
// login, its folder and APPENDLIMIT), downloading nothing and changing
// nothing: each POP3 session ends with QUIT having marked nothing deleted,
// and destinations are opened read-only or only looked at. It honours
// Jobs and PerHost and does not retry.
func Check(ctx context.Context, accounts []*config.Account, opts *Options) []*CheckResult {
	if opts == nil {
		opts = &Options{}
	}
	o := opts.withDefaults()
	r := newRunner(o, nil)
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
	if err := r.checkSource(ctx, ar, res); err != nil {
		res.Error = explain(err)
		return res
	}
	need := location.Need{Bytes: res.Bytes, Largest: res.Largest}
	for _, spec := range a.To {
		dc := DestinationCheck{Destination: specID(spec, r.opts.Destinations)}
		if r.opts.Destinations == nil {
			dc.Error = location.ErrNoRegistry.Error()
		} else if w, err := r.opts.Destinations.Check(ctx, spec, destinationEnv(a, &r.opts, true), need); err != nil {
			dc.Error, dc.Warnings = err.Error(), w
		} else {
			dc.Warnings = w
		}
		if dc.Error != "" && res.Error == "" {
			res.Error = fmt.Sprintf("destination %s: %s", dc.Destination, dc.Error)
		}
		res.Destinations = append(res.Destinations, dc)
	}
	return res
}

// checkSource runs the POP3 half of a check: connect, TLS and its
// certificate, CAPA before and after login, STAT, LIST and UIDL, QUIT.
func (r *runner) checkSource(ctx context.Context, ar *accountRun, res *CheckResult) error {
	release, err := r.hostSlot(ctx, ar.a)
	if err != nil {
		return err
	}
	defer release()
	c, err := ar.dial(ctx, loginAhead{})
	if err != nil {
		return err
	}
	defer c.Close()
	if st, ok := c.TLSConnectionState(); ok {
		res.TLS = tls.VersionName(st.Version)
		if len(st.PeerCertificates) > 0 {
			cert := st.PeerCertificates[0]
			res.Certificate = &CertInfo{Subject: cert.Subject.String(), Issuer: cert.Issuer.String(), NotAfter: cert.NotAfter.UTC()}
			if left := time.Until(cert.NotAfter); left < certWarnDays*24*time.Hour {
				res.Warnings = append(res.Warnings, fmt.Sprintf("the server's certificate expires in %d days (%s)", int(left.Hours()/24), cert.NotAfter.UTC().Format(time.DateOnly)))
			}
		}
	}
	before, err := c.Capabilities(ctx)
	if err != nil {
		return fmt.Errorf("capa: %w", err)
	}
	res.CapabilitiesBeforeLogin = capNames(before)
	if err := c.Login(ctx, ar.auth); err != nil {
		return fmt.Errorf("login as %s: %w", ar.a.User, err)
	}
	res.Auth = c.Mechanism()
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return fmt.Errorf("capa: %w", err)
	}
	res.Capabilities = capNames(caps)
	res.Pipelining = caps.Pipelining()
	if len(caps) == 0 {
		res.Warnings = append(res.Warnings, "the server has no CAPA: commands run one at a time")
	} else if !res.Pipelining {
		res.Warnings = append(res.Warnings, "no PIPELINING: one RETR at a time, slower on a distant server")
	}
	res.LoginDelay = strings.Join(caps["LOGIN-DELAY"], " ")
	if res.LoginDelay != "" {
		res.Warnings = append(res.Warnings, fmt.Sprintf("LOGIN-DELAY %s: the server allows a login to this mailbox only every %s seconds", res.LoginDelay, res.LoginDelay))
	}
	res.Expire = strings.Join(caps["EXPIRE"], " ")
	if e := strings.ToUpper(res.Expire); e != "" && e != "NEVER" && !strings.HasPrefix(e, "NEVER ") {
		res.Warnings = append(res.Warnings, fmt.Sprintf("EXPIRE %s: the server deletes (or hides) messages on its own %s days after they are retrieved: migrate each mailbox in one go and keep the journal", res.Expire, strings.Fields(res.Expire)[0]))
	}
	if res.Messages, res.Bytes, err = c.Stat(ctx); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	sizes, err := c.List(ctx)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	for _, m := range sizes {
		res.Largest = max(res.Largest, m.Size)
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
		return fmt.Errorf("uidl: %w", err)
	}
	if ar.a.InsecureSkipVerify {
		res.Warnings = append(res.Warnings, "certificate verification is off")
	}
	if err := c.Quit(ctx); err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("quit: %v", err))
	}
	return nil
}

// capNames returns the capability names of caps, sorted.
func capNames(caps pop3.Capabilities) []string {
	out := make([]string, 0, len(caps))
	for name := range caps {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
