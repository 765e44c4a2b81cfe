package imap

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/exporters"
)

// checkFolder rejects folder names that cannot be sent or would be LIST
// patterns.
func checkFolder(folder string) error {
	if strings.ContainsAny(folder, "\x00\r\n*%") {
		return fmt.Errorf("invalid folder %q: no NUL, CR, LF, '*' or '%%' allowed", folder)
	}
	for _, part := range strings.Split(folder, "/") {
		if part == "" {
			return fmt.Errorf("invalid folder %q: empty level", folder)
		}
	}
	return nil
}

// validFlag reports whether f can be sent as a flag: an atom, optionally
// after one '\' (a system flag).
func validFlag(f string) bool {
	f = strings.TrimPrefix(f, `\`)
	if f == "" {
		return false
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// ensureFolder maps Options.Folder to the server's name for it (the
// server's hierarchy delimiter instead of '/'), creates it with its
// parents when missing, subscribes to a folder it created, and returns
// the name. With trustInbox, INBOX is not looked for (every account has
// one: RFC 3501 section 5.1; see start for a server without); the
// delimiter is asked for (LIST "" "") only for a folder of more than one
// level; and SUBSCRIBE's answer is left for later: the caller calls
// subscribed (never nil) once the command after it was answered, before
// the connection is used for anything else (a grouped APPEND reads the
// connection itself). Against asking every time and waiting: two round
// trips less for a new folder of one level, one for an existing one, two
// for INBOX.
func (e *Exporter) ensureFolder(ctx context.Context, c *conn, trustInbox bool) (name string, subscribed func(), err error) {
	o := c.begin(ctx)
	defer o.end()
	var delim rune
	if strings.Contains(e.opts.Folder, "/") {
		root, err := c.client.List("", "", nil).Collect()
		if err != nil {
			return "", nil, fmt.Errorf("LIST for the hierarchy delimiter: %w", c.fail(err))
		}
		if len(root) > 0 {
			delim = root[0].Delim
		}
	}
	name, parents, err := serverName(e.opts.Folder, delim)
	if err != nil {
		return "", nil, err
	}
	nothing := func() {}
	if trustInbox && name == "INBOX" {
		return name, nothing, nil
	}
	exists := func() (bool, error) {
		l, err := c.client.List("", name, nil).Collect()
		if err != nil {
			return false, fmt.Errorf("LIST %q: %w", name, c.fail(err))
		}
		for _, d := range l {
			if d.Mailbox != name {
				continue
			}
			if slices.Contains(d.Attrs, imap.MailboxAttrNoSelect) || slices.Contains(d.Attrs, imap.MailboxAttrNonExistent) {
				return false, fmt.Errorf("folder %q exists but cannot hold messages (\\Noselect)", name)
			}
			return true, nil
		}
		return false, nil
	}
	ok, err := exists()
	if err != nil {
		return "", nil, err
	}
	if ok {
		return name, nothing, nil
	}
	if e.opts.ReadOnly {
		return "", nil, fmt.Errorf("folder %q: %w", name, exporters.ErrNotFound)
	}
	o.progress()
	if cerr := c.client.Create(name, nil).Wait(); cerr != nil {
		if c.isDead() {
			return "", nil, fmt.Errorf("CREATE %q: %w", name, c.fail(cerr))
		}
		// Most servers create the parents themselves; some want them
		// first. A parent that exists already fails harmlessly.
		for _, p := range parents {
			c.client.Create(p, nil).Wait()
			o.progress()
		}
		if err := c.client.Create(name, nil).Wait(); err != nil {
			// Someone else may have created it in the meantime.
			if ok, lerr := exists(); lerr != nil || !ok {
				return "", nil, fmt.Errorf("CREATE %q: %w", name, c.fail(err))
			}
			return name, nothing, nil
		}
	}
	// A folder nobody subscribed to is hidden by many mail readers. A
	// refusal changes nothing here.
	sub := c.client.Subscribe(name)
	return name, func() {
		o := c.begin(ctx) // the watchdog bounds a server that never answers
		sub.Wait()
		o.end()
	}, nil
}

// serverName turns folder ('/' between levels) into the server's name for
// it, with delim between levels, and lists its parents, outermost first.
func serverName(folder string, delim rune) (string, []string, error) {
	parts := strings.Split(folder, "/")
	if strings.EqualFold(parts[0], "INBOX") {
		parts[0] = "INBOX"
	}
	if len(parts) == 1 {
		return parts[0], nil, nil
	}
	if delim == 0 {
		return "", nil, fmt.Errorf("folder %q has levels but the server's folders are flat (no hierarchy delimiter)", folder)
	}
	for _, p := range parts {
		if strings.ContainsRune(p, delim) {
			return "", nil, fmt.Errorf("folder %q: level %q holds the server's hierarchy delimiter %q", folder, p, delim)
		}
	}
	var parents []string
	for i := 1; i < len(parts); i++ {
		parents = append(parents, strings.Join(parts[:i], string(delim)))
	}
	return strings.Join(parts, string(delim)), parents, nil
}
