package fleete2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/wardgate/wardgate/central/archive"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/gateway/upload"
	"github.com/wardgate/wardgate/internal/testnet"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/brokertest"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/recbundle"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the built binary after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// centralBinary builds cmd/wardgate-central once per test binary.
func centralBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fleete2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "wardgate-central")
		out, err := exec.Command("go", "build", "-o", binPath,
			"github.com/wardgate/wardgate/cmd/wardgate-central").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// realCentral is the wardgate-central binary with its archive mounted,
// a real mosquitto, and an approver's HTTPS client.
type realCentral struct {
	t       testing.TB
	pki     *certstest.MiniPKI
	broker  *brokertest.Mosquitto
	cfgFile string
	addr    string
	dir     string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	exited  chan struct{}
	oper    *http.Client
	seq     uint64
}

func startRealCentral(t testing.TB, pki *certstest.MiniPKI) *realCentral {
	bin := centralBinary(t)
	dir := t.TempDir()
	c := &realCentral{t: t, pki: pki, dir: dir, broker: brokertest.StartMosquitto(t, pki)}
	central := pki.Issue(t, "central", "spiffe://"+td+"/svc/central", "localhost")
	certFile, keyFile := central.WriteFiles(t, dir, "central")
	root := pki.WriteRoot(t, dir)
	c.addr = fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t))
	c.cfgFile = filepath.Join(dir, "central.yaml")
	yaml := fmt.Sprintf(`version: 1
central: {id: central-fleet, trust_domain: %s, listen: %q, db: "sqlite:%s", operator_cert_lifetime: 48h}
tls: {cert: %s, key: %s, ca: %s}
mqtt: {brokers: [%q], keepalive: 5s}
ingest: {reorder_window: 200ms}
archive: {dir: %s, retention: {default: 30d, sites: {st-long: 3650d}}}
`, td, c.addr, filepath.Join(dir, "central.db"), certFile, keyFile, root, c.broker.URL, filepath.Join(dir, "recordings"))
	if err := os.WriteFile(c.cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "config", "check", c.cfgFile).CombinedOutput()
	if err != nil {
		t.Fatalf("config check: %v: %s", err, out)
	}
	c.oper = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(pki.Approver(t, "security", "ann"))}}
	c.start()
	t.Cleanup(func() {
		if c.cmd != nil && c.cmd.Process != nil {
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			t.Logf("central's log:\n%s", c.log)
		}
	})
	return c
}

// start runs the binary and waits until the HTTPS API answers.
func (c *realCentral) start() {
	t := c.t
	c.cmd = exec.Command(centralBinary(t), "run", "--config", c.cfgFile)
	c.log = &bytes.Buffer{}
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.exited = make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	c.await("central's HTTPS API", func() bool {
		resp, err := c.oper.Get("https://" + c.addr + "/api/v1/whoami")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// kill9 kills the binary with SIGKILL.
func (c *realCentral) kill9() {
	if err := c.cmd.Process.Kill(); err != nil {
		c.t.Fatal(err)
	}
	<-c.exited
}

// await polls (the state lives in another process) for at most 60 s.
func (c *realCentral) await(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case <-c.exited:
			c.t.Fatalf("central exited while waiting for %s:\n%s", what, c.log)
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sessionEnd publishes gw's birth and signed vendor.session_end event for
// session with final hash head, and waits until central stored it.
func (c *realCentral) sessionEnd(gw *certstest.Identity, gwID, session string, head []byte) {
	t := c.t
	mc := paho.NewClient(paho.NewClientOptions().AddBroker(c.broker.URL).SetClientID(gwID).SetTLSConfig(c.pki.ClientTLS(gw)).SetAutoReconnect(false))
	if tok := mc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer mc.Disconnect(100)
	pub := func(kind envelope.Kind, body []byte) {
		c.seq++
		p, err := envelope.EncodePayload(&envelope.Envelope{Version: envelope.Version, Gateway: gwID, Session: 1, Seq: c.seq,
			Time: time.Now().UnixMilli(), Kind: kind, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		data, err := envelope.Sign(gw.Key, gw.Chain, p)
		if err != nil {
			t.Fatal(err)
		}
		if tok := mc.Publish(wire.Topic(gwID, kind), 1, false, data); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	if c.seq == 0 {
		bb, _ := wire.BirthBody(wire.Birth{Gateway: gwID, Site: "st-long", Version: "9.9.9"})
		pub(envelope.KindBirth, bb)
	}
	ev, _ := envelope.Marshal(wire.Event{Kind: "vendor.session_end", Severity: "info", Attrs: map[string]string{"session": session,
		"grant": "G-1", "device": "pump-07", "vendor": "spiffe://" + td + "/vendor/acme/bob", "hash": hex.EncodeToString(head)}})
	pub(envelope.KindEvent, ev)
	c.await("the session-end event stored", func() bool { return c.getJSON("/api/v1/recordings/"+gwID+"/"+session, nil) == 200 })
}

func (c *realCentral) getJSON(path string, v any) int {
	c.t.Helper()
	resp, err := c.oper.Get("https://" + c.addr + path)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode
}

func (c *realCentral) do(client *http.Client, method, path, body string) (int, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, "https://"+c.addr+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (c *realCentral) uploader(gw *certstest.Identity, gwID string, rate, chunk int64) *upload.Uploader {
	c.t.Helper()
	u, err := upload.New(upload.Options{URL: "https://" + c.addr, GatewayID: gwID, TLSConfig: func() *tls.Config {
		cfg := c.pki.ClientTLS(gw)
		cfg.ServerName = "localhost"
		return cfg
	}, VerifyReceipt: centralVerifier(c.pki), MaxRate: rate, Chunk: chunk, ReceiptDir: filepath.Join(c.t.TempDir(), "receipts")})
	if err != nil {
		c.t.Fatal(err)
	}
	return u
}

type recordingJSON struct {
	State        string `json:"state"`
	ReviewedBy   string `json:"reviewed_by"`
	Hold         bool   `json:"legal_hold"`
	Retention    string `json:"retention"`
	Size         int64  `json:"size"`
	Verification struct {
		OK      bool   `json:"ok"`
		Message string `json:"message"`
	} `json:"verification"`
}

// TestCentralBinaryArchive runs the archive mounted in the real
// wardgate-central: a gateway uploads after its session-end event arrived
// over MQTT, the operator sees it verified, reviews it, places a legal
// hold and exports a bundle that verifies offline; a gateway certificate
// reads nothing else, an operator cannot upload.
func TestCentralBinaryArchive(t *testing.T) {
	pki := certstest.NewMini(t)
	c := startRealCentral(t, pki)
	gw := pki.Gateway(t, "gw-1")
	path, head := makeRecording(t, t.TempDir(), "S-1", 200<<10)
	u := c.uploader(gw, "gw-1", 0, 64<<10)
	ctx := context.Background()
	if _, err := u.Upload(ctx, "S-1", path); !errors.Is(err, upload.ErrNotYet) {
		t.Fatalf("before the session-end event: %v", err)
	}
	c.sessionEnd(gw, "gw-1", "S-1", head)
	if _, err := u.Upload(ctx, "S-1", path); err != nil {
		t.Fatal(err)
	}
	var rec recordingJSON
	if c.getJSON("/api/v1/recordings/gw-1/S-1", &rec) != 200 || rec.State != "archived" || !rec.Verification.OK || rec.Size == 0 ||
		!strings.Contains(rec.Retention, "3650d") {
		t.Fatalf("recording %+v", rec)
	}
	// Gateways reach the upload protocol only; operators cannot upload.
	gwClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(gw)}}
	for _, p := range []string{"/api/v1/recordings", "/api/v1/recordings/gw-1/S-1", "/recordings", "/", "/api/v1/recordings/gw-1/S-1/bundle"} {
		if code, _ := c.do(gwClient, "GET", p, ""); code != http.StatusForbidden {
			t.Errorf("gateway GET %s: %d", p, code)
		}
	}
	if code, _ := c.do(gwClient, "GET", archive.PathPrefix+"gw-1/S-1/receipt", ""); code != 200 {
		t.Errorf("gateway receipt: %d", code)
	}
	if code, body := c.do(c.oper, "PUT", archive.PathPrefix+"gw-1/S-9", "x"); code != http.StatusForbidden {
		t.Errorf("operator PUT: %d %s", code, body)
	}
	// Review and legal hold, by the approver's identity.
	if code, body := c.do(c.oper, "POST", "/api/v1/recordings/gw-1/S-1/review", `{"note":"checked"}`); code != 200 {
		t.Fatalf("review: %d %s", code, body)
	}
	if code, body := c.do(c.oper, "POST", "/api/v1/recordings/gw-1/S-1/hold", `{"hold":true}`); code != 400 || !strings.Contains(string(body), "reason") {
		t.Fatalf("hold without reason: %d %s", code, body)
	}
	if code, body := c.do(c.oper, "POST", "/api/v1/recordings/gw-1/S-1/hold", `{"hold":true,"reason":"case 7"}`); code != 200 {
		t.Fatalf("hold: %d %s", code, body)
	}
	c.getJSON("/api/v1/recordings/gw-1/S-1", &rec)
	if rec.ReviewedBy != "spiffe://"+td+"/approver/security/ann" || !rec.Hold || !strings.Contains(rec.Retention, "legal hold") {
		t.Fatalf("after review and hold: %+v", rec)
	}
	var list struct{ Recordings []recordingJSON }
	if c.getJSON("/api/v1/recordings?reviewed=yes&hold=yes&gateway=gw-1", &list) != 200 || len(list.Recordings) != 1 {
		t.Fatalf("list %+v", list)
	}
	if code := c.getJSON("/api/v1/recordings?reviewed=maybe", nil); code != 400 {
		t.Fatalf("bad filter: %d", code)
	}
	// The bundle verifies offline; a modified copy does not.
	code, bundle := c.do(c.oper, "GET", "/api/v1/recordings/gw-1/S-1/bundle", "")
	if code != 200 {
		t.Fatalf("bundle: %d %s", code, bundle)
	}
	rep, err := recbundle.Verify(bytes.NewReader(bundle), pki.Roots(), nil)
	if err != nil || rep.Manifest.Exporter != "spiffe://"+td+"/approver/security/ann" {
		t.Fatalf("bundle: %+v %v", rep, err)
	}
	bad := bytes.Clone(bundle)
	bad[len(bad)-2048] ^= 0x20 // inside the recording, the last member
	if _, err := recbundle.Verify(bytes.NewReader(bad), pki.Roots(), nil); !errors.Is(err, recbundle.ErrInvalid) {
		t.Fatalf("modified bundle: %v", err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "bundle.tar"), bundle, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCentralBinaryTamperedRefused: a truncated and an altered upload
// through the mounted path are refused (422) and each leaves a finding.
func TestCentralBinaryTamperedRefused(t *testing.T) {
	pki := certstest.NewMini(t)
	c := startRealCentral(t, pki)
	gw := pki.Gateway(t, "gw-1")
	path, head := makeRecording(t, t.TempDir(), "T-0", 64<<10)
	data, _ := os.ReadFile(path)
	altered := bytes.Clone(data)
	altered[len(altered)/2] ^= 0x40
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(gw)}}
	for i, body := range [][]byte{data[:len(data)-100], altered} {
		session := fmt.Sprintf("T-%d", i)
		c.sessionEnd(gw, "gw-1", session, head)
		req, _ := http.NewRequest(http.MethodPut, "https://"+c.addr+archive.PathPrefix+"gw-1/"+session, bytes.NewReader(body))
		req.Header.Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(body)-1, len(body)))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("%s: %s", session, resp.Status)
		}
		var rec recordingJSON
		c.getJSON("/api/v1/recordings/gw-1/"+session, &rec)
		if rec.State != "refused" {
			t.Fatalf("%s: %+v", session, rec)
		}
	}
	var f struct {
		Findings []struct{ Kind, Gateway, Detail string }
	}
	c.getJSON("/api/v1/findings", &f)
	n := 0
	for _, x := range f.Findings {
		if x.Kind == "recording_refused" && x.Gateway == "gw-1" && strings.Contains(x.Detail, "chain broken") {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("findings %+v", f.Findings)
	}
}

// TestCentralBinaryResumeAfterKill9: the wardgate-central process is
// killed with SIGKILL mid-upload and restarted; the upload resumes from
// the offset it had synced.
func TestCentralBinaryResumeAfterKill9(t *testing.T) {
	pki := certstest.NewMini(t)
	c := startRealCentral(t, pki)
	gw := pki.Gateway(t, "gw-1")
	const size = 1 << 20
	path, head := makeRecording(t, t.TempDir(), "S-1", size)
	c.sessionEnd(gw, "gw-1", "S-1", head)
	u := c.uploader(gw, "gw-1", 1<<20, 32<<10)
	done := make(chan error, 1)
	go func() { _, err := u.Upload(context.Background(), "S-1", path); done <- err }()
	part := filepath.Join(c.dir, "recordings", "gw-1", "S-1.cbor.part")
	c.await("a quarter uploaded", func() bool { st, err := os.Stat(part); return err == nil && st.Size() >= size/4 })
	c.kill9()
	if err := <-done; err == nil {
		t.Fatal("upload finished although central was killed")
	}
	st, _ := os.Stat(part)
	before := u.Sent()
	c.start()
	if _, err := u.Upload(context.Background(), "S-1", path); err != nil {
		t.Fatal(err)
	}
	full, _ := os.Stat(path)
	again := u.Sent() - before
	t.Logf("killed with %d bytes stored; sent %d before, %d after (file %d)", st.Size(), before, again, full.Size())
	if again >= full.Size() {
		t.Fatalf("the upload started over: %d of %d", again, full.Size())
	}
	var rec recordingJSON
	if c.getJSON("/api/v1/recordings/gw-1/S-1", &rec); rec.State != "archived" || !rec.Verification.OK {
		t.Fatalf("after resume %+v", rec)
	}
}

// TestCentralBinaryResumeAfterClientKill9: the uploading process is
// killed with SIGKILL mid-upload; a new uploader resumes from what the
// real central stored.
func TestCentralBinaryResumeAfterClientKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary as the uploader to kill it")
	}
	pki := certstest.NewMini(t)
	c := startRealCentral(t, pki)
	gw := pki.Gateway(t, "gw-1")
	dir := t.TempDir()
	path, head := makeRecording(t, dir, "S-1", 1<<20)
	c.sessionEnd(gw, "gw-1", "S-1", head)
	certFile, keyFile := gw.WriteFiles(t, dir, "gw")
	conf, _ := json.Marshal(childConf{URL: "https://" + c.addr, GatewayCert: certFile, GatewayKey: keyFile,
		Root: pki.WriteRoot(t, dir), Path: path, Receipts: filepath.Join(dir, "receipts")})
	cmd := exec.Command(os.Args[0], "-test.run=^TestUploadChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+string(conf))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(c.dir, "recordings", "gw-1", "S-1.cbor.part")
	c.await("the child uploading", func() bool { st, err := os.Stat(part); return err == nil && st.Size() >= 128<<10 })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if strings.Contains(out.String(), "was not killed") {
		t.Fatalf("child finished: %s", out.String())
	}
	st, _ := os.Stat(part)
	u := c.uploader(gw, "gw-1", 0, 64<<10)
	if _, err := u.Upload(context.Background(), "S-1", path); err != nil {
		t.Fatal(err)
	}
	full, _ := os.Stat(path)
	t.Logf("child killed with %s of %d bytes stored; the new uploader sent %d", strconv.FormatInt(st.Size(), 10), full.Size(), u.Sent())
	if u.Sent() >= full.Size() {
		t.Fatalf("the upload started over: sent %d of %d", u.Sent(), full.Size())
	}
}
