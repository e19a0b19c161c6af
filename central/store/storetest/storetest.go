// Package storetest runs the same tests against both of central's
// databases: a SQLite file in a temporary directory, and a real
// PostgreSQL 15 (Debian's initdb/pg_ctl) started once per test binary in a
// temporary directory on a loopback port. When the process runs as root,
// PostgreSQL (which refuses root) runs as the unprivileged user "postgres"
// or "nobody". With CI set a missing PostgreSQL fails the test; with
// -short PostgreSQL cases are skipped. Safe for concurrent use.
package storetest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"database/sql"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"

	"github.com/wardgate/wardgate/internal/testnet"
)

// PGBin is where Debian installs PostgreSQL 15's server binaries.
var PGBin = "/usr/lib/postgresql/15/bin"

var (
	once    sync.Once
	baseDSN string
	pgErr   error
	dataDir string
	cred    *syscall.Credential
	dbSeq   atomic.Int64
)

// Main runs the tests and stops PostgreSQL if a test started it. Call it
// from TestMain: os.Exit(storetest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	Stop()
	return code
}

// Each runs fn once per database as subtests "sqlite" and "postgres", each
// with a fresh, empty database DSN.
func Each(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, Postgres(t)) })
}

// SQLite returns the DSN of a new SQLite file.
func SQLite(t testing.TB) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "central.db")
}

// Postgres returns the DSN of a new, empty database on the shared
// PostgreSQL server, starting it on first use.
func Postgres(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("PostgreSQL tests skipped with -short")
	}
	if _, err := Server(); err != nil {
		pgErr = err
	}
	if pgErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL 15 is required under CI (scripts/deps.sh installs it): %v", pgErr)
		}
		t.Skipf("PostgreSQL 15 not available (install postgresql-15, or run scripts/deps.sh): %v", pgErr)
	}
	dsn, err := NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// Server starts the shared PostgreSQL on first use and returns its base
// DSN (postgres://wardgate@127.0.0.1:PORT). Tools (scripts/fleetsim) use it
// too; they call Stop when done.
func Server() (string, error) {
	once.Do(start)
	return baseDSN, pgErr
}

// NewDatabase creates a new, empty database on the shared server and
// returns its DSN.
func NewDatabase() (string, error) {
	if _, err := Server(); err != nil {
		return "", err
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	db, err := sql.Open("pgx", baseDSN+"/postgres?sslmode=disable")
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return baseDSN + "/" + name + "?sslmode=disable", nil
}

// Stop stops the shared server if it was started.
func Stop() {
	if dataDir != "" {
		cmd := exec.Command(filepath.Join(PGBin, "pg_ctl"), "-D", filepath.Join(dataDir, "data"), "-m", "immediate", "-w", "stop")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		_ = cmd.Run()
		os.RemoveAll(dataDir)
		dataDir = ""
	}
}

func start() {
	initdb := filepath.Join(PGBin, "initdb")
	if _, err := os.Stat(initdb); err != nil {
		pgErr = fmt.Errorf("no %s: %w", initdb, err)
		return
	}
	dir, err := os.MkdirTemp("", "wardgate-pg-")
	if err != nil {
		pgErr = err
		return
	}
	dataDir = dir
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			u, err = user.Lookup("nobody")
		}
		if err != nil {
			pgErr = fmt.Errorf("running as root and no unprivileged user for PostgreSQL: %w", err)
			return
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			pgErr = err
			return
		}
		_ = os.Chmod(dir, 0o700)
	}
	run := func(args ...string) error {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", filepath.Base(args[0]), err, out)
		}
		return nil
	}
	data := filepath.Join(dir, "data")
	if err := run(initdb, "-D", data, "-U", "wardgate", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		pgErr = err
		return
	}
	port, err := testnet.Port()
	if err != nil {
		pgErr = err
		return
	}
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off", port, dir)
	// pg_ctl start detaches the server; -w waits until it accepts connections.
	if err := run(filepath.Join(PGBin, "pg_ctl"), "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		pgErr = err
		return
	}
	baseDSN = fmt.Sprintf("postgres://wardgate@127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		db, _ := sql.Open("pgx", baseDSN+"/postgres?sslmode=disable")
		err := db.Ping()
		db.Close()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			pgErr = err
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
