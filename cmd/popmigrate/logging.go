package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/popmigrate/popmigrate/internal/metrics"

	"github.com/spf13/pflag"
)

// logFlags are the log settings run, verify and purge share.
type logFlags struct {
	Format string // "text" or "json"
}

func addLogFlags(f *pflag.FlagSet, o *logFlags) {
	f.StringVar(&o.Format, "log-format", "text", "log lines on stderr as text, or json: one JSON object per event (connect, login, listing, batch, verify, delete, done, message failed), with every phase at level info")
}

// logger returns the command's logger on w: text at quiet (the level
// without -v) or Info with verbose, or JSON lines at Info, since a script
// that asks for JSON wants every phase event.
func (o *logFlags) logger(w io.Writer, quiet slog.Level, verbose bool) (*slog.Logger, error) {
	level := quiet
	if verbose {
		level = slog.LevelInfo
	}
	switch o.Format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", o.Format)
}

// serveMetrics serves a run's Prometheus metrics on addr at /metrics
// until stop is called, and says where on w.
func serveMetrics(addr string, w io.Writer) (*metrics.Metrics, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	m := metrics.New()
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	fmt.Fprintf(w, "popmigrate: metrics on http://%s/metrics\n", ln.Addr())
	return m, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
