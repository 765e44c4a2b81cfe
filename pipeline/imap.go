package pipeline

import (
	"context"
	"errors"
	"fmt"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters/imap"
	"github.com/popmigrate/popmigrate/internal/tlsconf"
)

// openIMAP connects to an IMAP destination with the account's target
// credentials: TLS (or STARTTLS, required) verified against the IMAP CA
// file, else the account's CA file, else the system roots.
func openIMAP(ctx context.Context, d *config.Destination, id string, a *config.Account, o *Options, readOnly bool) (*imap.Exporter, error) {
	io := &imap.Options{
		ReadOnly:      readOnly,
		ID:            id,
		Addr:          d.Addr(),
		Username:      d.User,
		Folder:        d.Folder,
		DateFrom:      o.IMAP.DateFrom,
		Conns:         o.IMAP.Conns,
		QuarantineDir: o.IMAP.QuarantineDir,
		Timeout:       o.Timeout,
	}
	switch d.Security {
	case config.SecurityTLS:
		io.Security = imap.SecurityTLS
	default:
		io.Security = imap.SecurityStartTLS
	}
	if o.IMAP.Flags != nil {
		io.Flags = make([]goimap.Flag, 0, len(o.IMAP.Flags))
		for _, f := range o.IMAP.Flags {
			io.Flags = append(io.Flags, goimap.Flag(f))
		}
	}
	if !a.ToOAuth2Token.IsZero() {
		tok, err := a.ToOAuth2Token.Resolve(ctx)
		if err != nil {
			return nil, fmt.Errorf("oauth2 token (%s): %w", a.ToOAuth2Token, err)
		}
		io.OAuth2Token = tok
	} else {
		pw, err := a.ToPassword.Resolve(ctx)
		if err != nil {
			return nil, fmt.Errorf("password (%s): %w", a.ToPassword, err)
		}
		io.Password = pw
	}
	caFile := o.IMAP.CAFile
	if caFile == "" {
		caFile = a.CAFile
	}
	cfg, err := tlsconf.Client(tlsconf.Options{ServerName: d.Host, CAFile: caFile, InsecureSkipVerify: a.InsecureSkipVerify})
	if err != nil {
		return nil, err
	}
	io.TLSConfig = cfg
	return imap.New(ctx, io)
}

// quarantined returns the path where a destination kept a message it
// refused, if err says so.
func quarantined(err error) (string, bool) {
	var q *imap.QuarantinedError
	if errors.As(err, &q) {
		return q.Path, true
	}
	return "", false
}
