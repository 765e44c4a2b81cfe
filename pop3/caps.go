package pop3

import (
	"strconv"
	"strings"
	"time"
)

// Capabilities are the server's CAPA response (RFC 2449): upper-cased
// capability name to its arguments as sent.
type Capabilities map[string][]string

// Has reports whether the server announced the capability name (any case).
func (c Capabilities) Has(name string) bool {
	_, ok := c[strings.ToUpper(name)]
	return ok
}

// SASL returns the mechanisms of the "SASL" capability, upper-cased.
func (c Capabilities) SASL() []string {
	args := c["SASL"]
	out := make([]string, 0, len(args))
	for _, m := range args {
		out = append(out, strings.ToUpper(m))
	}
	return out
}

// Pipelining reports whether the server accepts several commands in flight
// (the "PIPELINING" capability).
func (c Capabilities) Pipelining() bool { return c.Has("PIPELINING") }

// LoginDelay returns the minimum time between logins the server enforces
// ("LOGIN-DELAY n", seconds) and whether it announced one.
func (c Capabilities) LoginDelay() (time.Duration, bool) {
	args, ok := c["LOGIN-DELAY"]
	if !ok || len(args) == 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(args[0], 10, 32)
	if err != nil || n < 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}
