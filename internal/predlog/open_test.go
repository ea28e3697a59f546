package predlog_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelwatch/modelwatch/internal/predlog"
)

func TestStoreConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		c       predlog.StoreConfig
		wantErr string
	}{
		{c: predlog.StoreConfig{Store: "off"}},
		{c: predlog.StoreConfig{DataDir: "/var/lib/modelwatch"}},
		{c: predlog.StoreConfig{Store: "embedded", DataDir: "d", MaxBytes: 1 << 30}},
		{c: predlog.StoreConfig{Store: "postgres://u:p@db/predictions", DataDir: "d"}},
		{c: predlog.StoreConfig{Store: "postgresql://db/predictions", DataDir: "d"}},
		{c: predlog.StoreConfig{}, wantErr: "needs a data directory"},
		{c: predlog.StoreConfig{Store: "postgres://db/x"}, wantErr: "data directory for its spool"},
		{c: predlog.StoreConfig{Store: "mysql://u:secret@db/x", DataDir: "d"},
			wantErr: `prediction log "mysql://u:xxxxx@db/x" is not off, embedded or a postgres:// URL`},
		{c: predlog.StoreConfig{DataDir: "d", MaxBytes: -1}, wantErr: "must not be negative"},
	} {
		err := tc.c.Validate()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%+v: Validate = %v, want %q", tc.c, err, tc.wantErr)
		}
	}
}

func TestOpenStoreEmbedded(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")
	s, spool, err := predlog.OpenStore(ctx, predlog.StoreConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*predlog.SQLite); !ok || spool != nil {
		t.Fatalf("OpenStore = %T, %v; want *SQLite and no spool", s, spool)
	}
	if _, err := os.Stat(filepath.Join(dir, predlog.SQLiteFileName)); err != nil {
		t.Fatal(err)
	}
	s, spool, err = predlog.OpenStore(ctx, predlog.StoreConfig{Store: "off"})
	if s != nil || spool != nil || err != nil {
		t.Fatalf("OpenStore(off) = %v, %v, %v; want nothing", s, spool, err)
	}
}
