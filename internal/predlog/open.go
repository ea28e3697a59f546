package predlog

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"
)

// StoreConfig is what the command line says about the prediction log's
// store.
type StoreConfig struct {
	// Store picks the store: "off" (no log), "" or "embedded" (the SQLite
	// file SQLiteFileName in DataDir), or a PostgreSQL URL
	// (postgres://... or postgresql://...).
	Store string
	// DataDir holds the embedded store's file, and the PostgreSQL store's
	// spool in its subdirectory "spool".
	DataDir string
	// Retention is how long records are kept (default DefaultRetention).
	Retention time.Duration
	// MaxBytes bounds the embedded store's file; zero means no bound.
	MaxBytes int64
	// SpoolMaxBytes bounds the PostgreSQL store's spool (default 1 GiB).
	SpoolMaxBytes int64
	// Logger receives what happens while a PostgreSQL database that could
	// not be reached at start is retried (default: discarded).
	Logger *slog.Logger
}

// DefaultSpoolMaxBytes is the spool's bound unless configured.
const DefaultSpoolMaxBytes = 1 << 30

// Off reports whether the configuration turns the log off.
func (c StoreConfig) Off() bool { return c.Store == "off" }

// Validate reports a configuration that OpenStore would refuse, without
// opening anything.
func (c StoreConfig) Validate() error {
	switch {
	case c.Off():
		return nil
	case c.Store == "" || c.Store == "embedded":
		if c.DataDir == "" {
			return fmt.Errorf("the embedded prediction log needs a data directory")
		}
	case strings.HasPrefix(c.Store, "postgres://") || strings.HasPrefix(c.Store, "postgresql://"):
		if c.DataDir == "" {
			return fmt.Errorf("the PostgreSQL prediction log needs a data directory for its spool")
		}
	default:
		return fmt.Errorf("prediction log %q is not off, embedded or a postgres:// URL", redact(c.Store))
	}
	if c.Retention < 0 || c.MaxBytes < 0 || c.SpoolMaxBytes < 0 {
		return fmt.Errorf("prediction log retention and size bounds must not be negative")
	}
	return nil
}

// Describe names the store for logs: "embedded" and its file, or the
// PostgreSQL URL without its password.
func (c StoreConfig) Describe() string {
	switch {
	case c.Off():
		return "off"
	case c.Store == "" || c.Store == "embedded":
		return "embedded " + filepath.Join(c.DataDir, SQLiteFileName)
	}
	return redact(c.Store)
}

// redact hides a password in a URL-like value for error messages.
func redact(v string) string {
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok {
		return v
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok {
		return v
	}
	user, _, hasPassword := strings.Cut(userinfo, ":")
	if !hasPassword {
		return v
	}
	return scheme + "://" + user + ":xxxxx@" + host
}

// OpenStore opens the configured store and, for PostgreSQL, its spool
// (nil for the embedded store, whose file is local). With the log off it
// returns nil, nil, nil. A PostgreSQL database that does not answer is not
// an error: the store connects in the background, and until then the Log
// spools (a bad URL, or a database that refuses the connection, is).
func OpenStore(ctx context.Context, c StoreConfig) (Store, *Spool, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	if c.Off() {
		return nil, nil, nil
	}
	if c.Store == "" || c.Store == "embedded" {
		s, err := OpenSQLite(ctx, filepath.Join(c.DataDir, SQLiteFileName),
			SQLiteOptions{Retention: c.Retention, MaxBytes: c.MaxBytes})
		if err != nil {
			return nil, nil, err
		}
		return s, nil, nil
	}
	spoolMax := c.SpoolMaxBytes
	if spoolMax == 0 {
		spoolMax = DefaultSpoolMaxBytes
	}
	spool, err := OpenSpool(filepath.Join(c.DataDir, "spool"), spoolMax)
	if err != nil {
		return nil, nil, err
	}
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s, err := openPostgresEventually(ctx, c.Store, PostgresOptions{Retention: c.Retention}, logger)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", redact(c.Store), err)
	}
	return s, spool, nil
}
