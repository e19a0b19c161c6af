package siem

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/internal/testnet"
	"github.com/wardgate/wardgate/wire/brokertest"
)

// rsyslog is a real rsyslogd receiving RFC 5424 over TCP with octet
// counting and writing what its own RFC 5424 parser made of each message
// to a file, one line per message.
type rsyslog struct {
	t    *testing.T
	bin  string
	dir  string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// rsyslogTLS, when given to startRsyslog, makes it require TLS with a
// client certificate valid under CAFile (gtls driver, x509/certvalid).
type rsyslogTLS struct{ CAFile, CertFile, KeyFile string }

func startRsyslog(t *testing.T, tlsFiles *rsyslogTLS) *rsyslog {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		bin = "/usr/sbin/rsyslogd"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("rsyslogd is missing: run scripts/deps.sh")
			}
			t.Skip("rsyslogd is missing (scripts/deps.sh installs it)")
		}
	}
	dir := t.TempDir()
	port := testnet.FreePort(t)
	module := `module(load="imtcp")`
	if tlsFiles != nil {
		module = fmt.Sprintf(`global(defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile=%q
  defaultNetstreamDriverCertFile=%q defaultNetstreamDriverKeyFile=%q)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")`,
			tlsFiles.CAFile, tlsFiles.CertFile, tlsFiles.KeyFile)
	}
	conf := fmt.Sprintf(`global(workDirectory=%[1]q maxMessageSize="64k")
%[4]s
input(type="imtcp" address="127.0.0.1" port="%[2]d" supportOctetCountedFraming="on")
template(name="fields" type="list") {
  property(name="timereported" dateFormat="rfc3339") constant(value="|")
  property(name="hostname") constant(value="|")
  property(name="app-name") constant(value="|")
  property(name="msgid") constant(value="|")
  property(name="pri") constant(value="|")
  property(name="structured-data") constant(value="|")
  property(name="msg") constant(value="\n")
}
action(type="omfile" file=%[3]q template="fields" flushOnTXEnd="on" asyncWriting="off")
`, dir, port, filepath.Join(dir, "out.log"), module)
	if err := os.WriteFile(filepath.Join(dir, "rsyslog.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &rsyslog{t: t, bin: bin, dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *rsyslog) start() {
	r.t.Helper()
	cmd := exec.Command(r.bin, "-n", "-f", filepath.Join(r.dir, "rsyslog.conf"), "-i", filepath.Join(r.dir, "rsyslog.pid"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start rsyslogd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.cmd, r.done = cmd, done
	if err := brokertest.WaitPort(r.addr, 15*time.Second); err != nil {
		r.t.Fatalf("rsyslogd did not listen: %v\n%s", err, stderr.String())
	}
}

// kill ends rsyslogd with SIGKILL: a crash, not a shutdown.
func (r *rsyslog) kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
	r.cmd = nil
	_ = os.Remove(filepath.Join(r.dir, "rsyslog.pid"))
}

func (r *rsyslog) lines() []string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "out.log"))
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

var seqParam = regexp.MustCompile(` seq="(\d+)"`)

// seqs returns the gateway seq of every line rsyslog wrote, checking the
// fields its RFC 5424 parser extracted.
func (r *rsyslog) seqs(t *testing.T) []uint64 {
	t.Helper()
	var out []uint64
	for _, l := range r.lines() {
		f := strings.SplitN(l, "|", 7)
		if len(f) != 7 || f[1] != "gw-icu3-12" || f[2] != "wardgate" || f[3] != "vendor.request" || f[4] != "110" ||
			!strings.HasPrefix(f[5], `[wardgate@32473 gateway="gw-icu3-12" session="3" seq="`) ||
			!strings.Contains(f[5], `][meta sequenceId="`) || !strings.HasPrefix(f[6], "Vendor access requested on gw-icu3-12") {
			t.Fatalf("rsyslog parsed a record differently: %q", l)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil {
			t.Fatalf("rsyslog timestamp %q: %v", f[0], err)
		}
		m := seqParam.FindStringSubmatch(f[5])
		s, _ := strconv.ParseUint(m[1], 10, 64)
		out = append(out, s)
	}
	return out
}

// waitLines polls rsyslog's output file (another process) until cond.
func (r *rsyslog) waitLines(t *testing.T, what string, cond func(n int) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond(len(r.lines())) {
		if time.Now().After(deadline) {
			t.Fatalf("rsyslog: timed out waiting for %s (%d lines)", what, len(r.lines()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRsyslogKillAndRestart streams to a real rsyslogd, kills it with
// SIGKILL in the middle of the stream, starts it again, and checks in
// rsyslog's own output that every record arrived, in order, and that
// rsyslog's RFC 5424 parser read every field as meant.
func TestRsyslogKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs rsyslogd")
	}
	r := startRsyslog(t, nil)
	e := newSinkEnv(t, r.addr, nil)
	e.await(t, "connected")
	const total = 200
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(2 * time.Millisecond) // pace the stream so the kill lands inside it
		defer tick.Stop()
		for i := uint64(1); i <= total; i++ {
			<-tick.C
			if err := e.sink.Send(seqLine(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	r.waitLines(t, "50 records", func(n int) bool { return n >= 50 })
	r.kill()
	e.await(t, "lost")
	r.start()
	// Release the backoff until the sink is connected again.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for connected := false; !connected; {
		if err := e.clk.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal("sink never waited for its backoff")
		}
		e.clk.Advance(4 * time.Second)
		select {
		case ev := <-e.notes:
			connected = ev == "connected"
		case <-time.After(500 * time.Millisecond):
		}
	}
	<-sent
	seen := map[uint64]bool{}
	r.waitLines(t, "every record", func(int) bool {
		for _, s := range r.seqs(t) {
			seen[s] = true
		}
		return len(seen) == total
	})
	seqs := r.seqs(t)
	// Order: dropping repeats (records re-sent after the crash), the
	// stream is 1..total.
	var next uint64 = 1
	for _, s := range seqs {
		if s == next {
			next++
		} else if s > next {
			t.Fatalf("seq %d arrived before %d: %v", s, next, seqs)
		}
	}
	if next != total+1 {
		t.Fatalf("records missing: next %d", next)
	}
	t.Logf("%d lines for %d records (%d re-sent after the crash)", len(seqs), total, len(seqs)-total)
}

// TestRsyslogMutualTLS delivers to a real rsyslogd that requires TLS and
// a client certificate from the hospital CA.
func TestRsyslogMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs rsyslogd")
	}
	pki := certstest.NewMini(t)
	dir := t.TempDir()
	certFile, keyFile := pki.Server(t).WriteFiles(t, dir, "server")
	r := startRsyslog(t, &rsyslogTLS{CAFile: pki.WriteRoot(t, dir), CertFile: certFile, KeyFile: keyFile})
	conf := pki.ClientTLS(pki.Issue(t, "central", "spiffe://hospital.example/svc/central"))
	conf.ServerName = ""
	e := newSinkEnv(t, r.addr, conf)
	for i := uint64(1); i <= 20; i++ {
		if err := e.sink.Send(seqLine(i)); err != nil {
			t.Fatal(err)
		}
	}
	r.waitLines(t, "20 records", func(n int) bool { return n >= 20 })
	seqs := r.seqs(t)
	checkRun(t, "rsyslog over mutual TLS", seqs[:20], 1)

	// Without a client certificate rsyslog ends the connection and writes
	// nothing; the record stays queued.
	anon := conf.Clone()
	anon.Certificates = nil
	e2 := newSinkEnv(t, r.addr, anon)
	_ = e2.sink.Send(seqLine(99))
	timeout := time.After(15 * time.Second)
	for refused := false; !refused; {
		select {
		case ev := <-e2.notes:
			refused = ev == "lost" || ev == "dial_failed"
		case <-timeout:
			t.Fatal("rsyslog accepted a client without a certificate")
		}
	}
	if n := len(r.lines()); n != 20 || e2.sink.Stats().Queued != 1 {
		t.Errorf("after the anonymous client: %d lines, queued %d", n, e2.sink.Stats().Queued)
	}
}
