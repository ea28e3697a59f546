package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
)

// Postgres is a throw-away PostgreSQL server made by StartPostgres: a
// cluster made with initdb in a temporary directory, listening on
// 127.0.0.1 on a free port, trusting local connections.
type Postgres struct {
	t       testing.TB
	bin     string // the directory of initdb and pg_ctl
	dir     string // owned by the server's user; data/ and the socket in it
	port    int
	runAs   string // user to run the server as, "" for the current one
	running bool
}

// StartPostgres starts a PostgreSQL server for the test and stops it, and
// removes its files, in t.Cleanup. It needs Debian's postgresql package (the
// server's initdb and pg_ctl under /usr/lib/postgresql/*/bin): without it
// the test is skipped, except under CI=true, where it fails. Run as root,
// the server runs as the postgres user, since PostgreSQL refuses root.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin := postgresBin()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("PostgreSQL's initdb is not installed (Debian package postgresql); CI must have it")
		}
		t.Skip("PostgreSQL's initdb not installed (Debian package postgresql)")
	}
	dir, err := os.MkdirTemp("", "modelwatch-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Postgres{t: t, bin: bin, dir: dir}
	t.Cleanup(func() {
		if p.running {
			p.pgctl("stop", "-m", "immediate", "-w")
		}
		os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, PostgreSQL needs the postgres user (made by Debian's postgresql package): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		p.runAs = "postgres"
	}
	p.run(filepath.Join(bin, "initdb"), "-D", p.dataDir(), "-U", "postgres", "-A", "trust",
		"--no-sync", "-E", "UTF8", "--locale", "C")
	p.port = freePort(t)
	p.Start()
	return p
}

// postgresBin returns the newest installed server's bin directory.
func postgresBin() string {
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p)
		}
		return ""
	}
	sort.Slice(found, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[j]))))
		return vi < vj
	})
	return filepath.Dir(found[len(found)-1])
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (p *Postgres) dataDir() string { return filepath.Join(p.dir, "data") }

// run runs a server command as the server's user; a failure fails the test.
func (p *Postgres) run(name string, args ...string) {
	p.t.Helper()
	cmd := exec.Command(name, args...)
	if p.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", p.runAs, "--", name}, args...)...)
	}
	cmd.Dir = p.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "server.log"))
		p.t.Fatalf("%s %v: %v\n%s\nserver log:\n%s", filepath.Base(name), args, err, out, log)
	}
}

func (p *Postgres) pgctl(args ...string) {
	p.t.Helper()
	p.run(filepath.Join(p.bin, "pg_ctl"), append([]string{"-D", p.dataDir()}, args...)...)
}

// Start starts the server (again, after Stop) on its port, and waits until
// it takes connections.
func (p *Postgres) Start() {
	p.t.Helper()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c full_page_writes=off", p.port, p.dir)
	p.pgctl("start", "-w", "-t", "60", "-l", filepath.Join(p.dir, "server.log"), "-o", opts)
	p.running = true
}

// Stop stops the server, ending its connections at once, as a crash or a
// lost network would.
func (p *Postgres) Stop() {
	p.t.Helper()
	p.pgctl("stop", "-m", "immediate", "-w", "-t", "60")
	p.running = false
}

// DSN returns the connection string of the server's postgres database as
// its superuser.
func (p *Postgres) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", p.port)
}

// Port returns the TCP port the server listens on.
func (p *Postgres) Port() int { return p.port }

// CreateDatabase makes a new, empty database and returns its DSN, for tests
// that want a schema of their own on a shared server.
func (p *Postgres) CreateDatabase(name string) string {
	p.t.Helper()
	p.run(filepath.Join(p.bin, "createdb"), "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "postgres", name)
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=5", p.port, name)
}
