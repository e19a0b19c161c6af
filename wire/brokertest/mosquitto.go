package brokertest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/internal/testnet"
)

// need fails (under CI) or skips when a binary is missing.
func need(t testing.TB, bin string) string {
	t.Helper()
	if testing.Short() {
		// -short is the unit-test run (make test-arm under qemu-user):
		// broker integration tests run in make test.
		t.Skipf("%s integration test skipped in -short mode", bin)
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
			if p := filepath.Join(dir, bin); fileExists(p) {
				return p
			}
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (scripts/deps.sh installs it)", bin)
		}
		t.Skipf("%s is not installed", bin)
	}
	return path
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// WaitPort waits until something accepts on addr.
func WaitPort(addr string, timeout time.Duration) error {
	return waitListening(addr, nil, timeout)
}

// waitListening waits until something accepts on addr, or until exited is
// closed: the process that was to listen there ended (a port it could not
// bind, a bad configuration), which its log tells.
func waitListening(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("the process exited before it listened on %s", addr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MosquittoACL is the ACL of docs/security-team.md: each gateway (its
// certificate's CN is its id, %u) writes only the topics of its message
// kinds (wire.Topic) and reads its commands and the lock sets; "central"
// reads and writes all. A gateway does not get wardgate/v1/GW/#, which
// would let it replace the retained set on its own lock-set topic (it
// cannot forge one, but it could drop central's); mosquitto cannot tell a
// gateway's site, so every gateway reads every site's set (the set names
// its scope and the gateway ignores other sites'); no gateway may be named
// "fleet" or "site".
const MosquittoACL = `# gateways: CN = gateway id = %u
pattern write wardgate/v1/%u/birth
pattern write wardgate/v1/%u/death
pattern write wardgate/v1/%u/status
pattern write wardgate/v1/%u/metrics
pattern write wardgate/v1/%u/event
pattern write wardgate/v1/%u/inventory
pattern write wardgate/v1/%u/cmd/reply
pattern read wardgate/v1/%u/cmd
pattern read wardgate/v1/%u/lockset
pattern read wardgate/v1/fleet/lockset
pattern read wardgate/v1/site/+/lockset

user central
topic readwrite wardgate/v1/#
`

// Mosquitto is a running mosquitto.
type Mosquitto struct {
	Port int
	URL  string
	dir  string
	bin  string
	t    testing.TB
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartMosquitto starts mosquitto with TLS, require_certificate,
// use_identity_as_username, persistence and MosquittoACL.
func StartMosquitto(t testing.TB, pki *certstest.MiniPKI) *Mosquitto {
	t.Helper()
	return StartMosquittoACL(t, pki, MosquittoACL)
}

// StartMosquittoACL is StartMosquitto with another ACL file content.
func StartMosquittoACL(t testing.TB, pki *certstest.MiniPKI, aclText string) *Mosquitto {
	t.Helper()
	bin := need(t, "mosquitto")
	dir := t.TempDir()
	srv := pki.Server(t)
	certFile, keyFile := srv.WriteFiles(t, dir, "server")
	root := pki.WriteRoot(t, dir)
	acl := filepath.Join(dir, "acl")
	if err := os.WriteFile(acl, []byte(aclText), 0o600); err != nil {
		t.Fatal(err)
	}
	port := testnet.FreePort(t)
	conf := fmt.Sprintf(`user root
persistence true
persistence_location %s/
autosave_interval 1
max_queued_messages 0
max_inflight_messages 0
set_tcp_nodelay true
log_dest file %s/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
acl_file %s
`, dir, dir, port, root, certFile, keyFile, acl)
	if err := os.WriteFile(filepath.Join(dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &Mosquitto{Port: port, URL: fmt.Sprintf("ssl://127.0.0.1:%d", port), dir: dir, bin: bin, t: t}
	m.Start()
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "mosquitto.log")); err == nil && len(b) > 0 {
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("mosquitto.log (tail):\n%s", b)
			}
		}
	})
	return m
}

// Start starts (or restarts) the broker on the same port.
func (m *Mosquitto) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	cmd := exec.Command(m.bin, "-c", filepath.Join(m.dir, "mosquitto.conf"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done
	if err := waitListening("127.0.0.1:"+strconv.Itoa(m.Port), done, 10*time.Second); err != nil {
		b, _ := os.ReadFile(filepath.Join(m.dir, "mosquitto.log"))
		m.t.Fatalf("mosquitto did not start: %v\n%s", err, b)
	}
}

// Stop stops the broker (SIGTERM: it saves its persistence file).
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}
