package fleete2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/central/archive"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/gateway/upload"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/recchain"
)

const td = certstest.MiniTrustDomain

// makeRecording writes a closed recording of about size bytes and returns
// its path and final hash.
func makeRecording(t testing.TB, dir, session string, size int) (string, []byte) {
	t.Helper()
	path := filepath.Join(dir, session+".cbor")
	w, err := recording.Create(path, recording.Header{Session: session, Grant: "G-1", Vendor: "spiffe://" + td + "/vendor/acme/bob",
		Device: "pump-07", Port: 23, Start: time.Now()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for written := 0; written < size; written += len(buf) {
		_, _ = rand.Read(buf)
		if err := w.Write(recording.ToDevice, time.Now(), buf); err != nil {
			t.Fatal(err)
		}
	}
	head, err := w.Close(time.Now(), "vendor disconnected")
	if err != nil {
		t.Fatal(err)
	}
	return path, head
}

// central is an archive behind a real HTTPS listener with mTLS.
type central struct {
	t        testing.TB
	pki      *certstest.MiniPKI
	dir      string
	addr     string
	srv      *http.Server
	arch     *archive.Archive
	mu       sync.Mutex
	heads    map[string][]byte
	findings []archive.Finding
	chunks   chan int64 // the stored offset after each PUT
	signer   *certstest.Identity
}

func newCentral(t testing.TB, pki *certstest.MiniPKI) *central {
	c := &central{t: t, pki: pki, dir: t.TempDir(), heads: map[string][]byte{}, chunks: make(chan int64, 1024),
		signer: pki.Issue(t, "central", "spiffe://"+td+"/svc/central")}
	c.start("127.0.0.1:0")
	return c
}

func (c *central) start(addr string) {
	t := c.t
	arch, err := archive.New(archive.Options{Dir: c.dir, TrustDomain: td,
		ExpectedHead: func(_ context.Context, gw, session string) ([]byte, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			h, ok := c.heads[gw+"/"+session]
			if !ok {
				return nil, archive.ErrUnknownSession
			}
			return h, nil
		},
		Signer: func() (crypto.Signer, []*x509.Certificate) { return c.signer.Key, c.signer.Chain },
		OnFinding: func(f archive.Finding) {
			c.mu.Lock()
			c.findings = append(c.findings, f)
			c.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	for range 50 { // the old socket of a restarted server may linger a moment
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srvID := c.pki.Server(t)
	cert := srvID.TLS()
	c.arch, c.addr = arch, l.Addr().String()
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arch.ServeHTTP(w, r)
		if r.Method == http.MethodPut {
			if st, err := os.Stat(filepath.Join(c.dir, strings.TrimPrefix(r.URL.Path, archive.PathPrefix)+".cbor.part")); err == nil {
				select {
				case c.chunks <- st.Size():
				default:
				}
			}
		}
	}), TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: c.pki.Roots()}}
	go func() { _ = c.srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = c.srv.Close() })
}

// kill drops the server and every connection at once (a crash, as far
// as the client can tell).
func (c *central) kill() { _ = c.srv.Close() }

func (c *central) expect(gw, session string, head []byte) {
	c.mu.Lock()
	c.heads[gw+"/"+session] = head
	c.mu.Unlock()
}

// awaitOffset waits until a PUT left at least n bytes stored.
func (c *central) awaitOffset(t testing.TB, n int64) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case off := <-c.chunks:
			if off >= n {
				return
			}
		case <-deadline:
			t.Fatalf("central never stored %d bytes", n)
		}
	}
}

func centralVerifier(pki *certstest.MiniPKI) envelope.ChainVerifier {
	roots := envelope.RootsVerifier(pki.Roots())
	return func(chain []*x509.Certificate, now time.Time) (string, error) {
		id, err := roots(chain, now)
		if err != nil {
			return "", err
		}
		if id != "spiffe://"+td+"/svc/central" {
			return "", fmt.Errorf("%s is not central", id)
		}
		return id, nil
	}
}

func newUploader(t testing.TB, pki *certstest.MiniPKI, c *central, gw *certstest.Identity, gwID string, rate, chunk int64, mods ...func(*upload.Options)) *upload.Uploader {
	t.Helper()
	o := upload.Options{URL: "https://" + c.addr, GatewayID: gwID, TLSConfig: func() *tls.Config { return pki.ClientTLS(gw) },
		VerifyReceipt: centralVerifier(pki), MaxRate: rate, Chunk: chunk, ReceiptDir: filepath.Join(t.TempDir(), "receipts")}
	for _, m := range mods {
		m(&o)
	}
	u, err := upload.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestUploadAndReceipt(t *testing.T) {
	pki := certstest.NewMini(t)
	c := newCentral(t, pki)
	gw := pki.Gateway(t, "gw-1")
	path, head := makeRecording(t, t.TempDir(), "S-1", 300<<10)
	u := newUploader(t, pki, c, gw, "gw-1", 0, 64<<10)
	ctx := context.Background()

	if _, err := u.Upload(ctx, "S-1", path); !errors.Is(err, upload.ErrNotYet) {
		t.Fatalf("before the session-end event: %v", err)
	}
	c.expect("gw-1", "S-1", head)
	r, err := u.Upload(ctx, "S-1", path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Head, head) || r.Gateway != "gw-1" || r.Session != "S-1" {
		t.Fatalf("receipt %+v", r)
	}
	if ok, err := u.Archived("S-1"); !ok || err != nil {
		t.Fatalf("Archived = %v, %v", ok, err)
	}
	want, _ := os.ReadFile(path)
	got, err := os.ReadFile(c.arch.Path("gw-1", "S-1"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("archived copy differs (%v)", err)
	}
	// The archive's chain check agrees with the recorder's verifier.
	if s, err := recchain.Check(bytes.NewReader(got), head); err != nil || s.Bytes != int64(len(got)) {
		t.Fatalf("recchain: %+v %v", s, err)
	}
	// Uploading again (a lost answer) fetches the receipt.
	if _, err := newUploader(t, pki, c, gw, "gw-1", 0, 0).Upload(ctx, "S-1", path); err != nil {
		t.Fatalf("again: %v", err)
	}
	// Another gateway's certificate cannot upload under gw-1.
	other := pki.Gateway(t, "gw-2")
	p2, h2 := makeRecording(t, t.TempDir(), "S-2", 10<<10)
	c.expect("gw-1", "S-2", h2)
	if _, err := newUploader(t, pki, c, other, "gw-1", 0, 0).Upload(ctx, "S-2", p2); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("gw-2 uploading as gw-1: %v", err)
	}
}

func TestUploadTamperedRefused(t *testing.T) {
	pki := certstest.NewMini(t)
	c := newCentral(t, pki)
	gw := pki.Gateway(t, "gw-1")
	path, _ := makeRecording(t, t.TempDir(), "S-1", 100<<10)
	_, other := makeRecording(t, t.TempDir(), "S-1", 10<<10)
	c.expect("gw-1", "S-1", other) // the signed event names another chain
	refused := 0
	u := newUploader(t, pki, c, gw, "gw-1", 0, 32<<10, func(o *upload.Options) { o.OnRefused = func(string, error) { refused++ } })

	if _, err := u.Upload(context.Background(), "S-1", path); !errors.Is(err, upload.ErrRefused) || refused != 1 {
		t.Fatalf("mismatching head: %v (refused %d)", err, refused)
	}
	if ok, _ := u.Archived("S-1"); ok {
		t.Fatal("receipt kept for a refused upload")
	}

	// A truncated upload and an altered one, sent raw (the uploader checks
	// its copy first and would not send them).
	data, _ := os.ReadFile(path)
	altered := bytes.Clone(data)
	altered[len(altered)/2] ^= 0x40
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(gw)}}
	for i, body := range [][]byte{data[:len(data)-100], altered} {
		session := fmt.Sprintf("T-%d", i)
		sum, _ := recchain.Check(bytes.NewReader(data), nil)
		c.expect("gw-1", session, sum.Head)
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
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.findings) != 3 {
		t.Fatalf("findings %+v", c.findings)
	}
	for _, f := range c.findings {
		if f.Gateway != "gw-1" || !strings.Contains(f.Reason, "chain broken") {
			t.Fatalf("finding %+v", f)
		}
	}
}

// TestUploadResumeAfterServerKill: central dies mid-upload and comes back
// (a new handler on the same directory); the upload resumes from the
// stored offset.
func TestUploadResumeAfterServerKill(t *testing.T) {
	pki := certstest.NewMini(t)
	c := newCentral(t, pki)
	gw := pki.Gateway(t, "gw-1")
	const size = 1 << 20
	path, head := makeRecording(t, t.TempDir(), "S-1", size)
	c.expect("gw-1", "S-1", head)
	u := newUploader(t, pki, c, gw, "gw-1", 2<<20, 64<<10)
	done := make(chan error, 1)
	go func() { _, err := u.Upload(context.Background(), "S-1", path); done <- err }()
	c.awaitOffset(t, 256<<10)
	c.kill()
	if err := <-done; err == nil {
		t.Fatal("upload finished although central died")
	}
	before := u.Sent()
	c.start(c.addr)
	if _, err := u.Upload(context.Background(), "S-1", path); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	again := u.Sent() - before
	t.Logf("sent %d bytes before the kill, %d after (file %d)", before, again, st.Size())
	if before+again > st.Size()+2*(64<<10) {
		t.Fatalf("resent too much: %d + %d for %d bytes", before, again, st.Size())
	}
}

// childEnv carries the uploader's settings to a re-executed test binary.
const childEnv = "WARDGATE_UPLOAD_CHILD"

type childConf struct {
	URL, GatewayCert, GatewayKey, Root, Path, Receipts string
}

// TestUploadChild is the uploader run in a child process (only with
// childEnv set): the parent kills it with SIGKILL mid-upload.
func TestUploadChild(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("runs as the child of TestUploadResumeAfterClientKill")
	}
	var cc childConf
	if err := json.Unmarshal([]byte(raw), &cc); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(cc.GatewayCert, cc.GatewayKey)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(cc.Root)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	u, err := upload.New(upload.Options{URL: cc.URL, GatewayID: "gw-1", ReceiptDir: cc.Receipts, MaxRate: 256 << 10, Chunk: 32 << 10,
		TLSConfig: func() *tls.Config {
			return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, Certificates: []tls.Certificate{cert}, ServerName: "localhost"}
		},
		VerifyReceipt: envelope.RootsVerifier(roots)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.Upload(context.Background(), "S-1", cc.Path)
	t.Fatalf("the child was not killed: %v", err)
}

// TestUploadResumeAfterClientKill: the uploading process is killed with
// SIGKILL mid-upload; a new uploader resumes from central's offset.
func TestUploadResumeAfterClientKill(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary as the uploader to kill it (not under qemu's -short runs)")
	}
	pki := certstest.NewMini(t)
	c := newCentral(t, pki)
	gw := pki.Gateway(t, "gw-1")
	dir := t.TempDir()
	path, head := makeRecording(t, dir, "S-1", 1<<20)
	c.expect("gw-1", "S-1", head)
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
	c.awaitOffset(t, 128<<10)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if strings.Contains(out.String(), "was not killed") {
		t.Fatalf("child finished: %s", out.String())
	}
	req, _ := http.NewRequest(http.MethodHead, "https://"+c.addr+archive.PathPrefix+"gw-1/S-1", nil)
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(gw)}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	stored := resp.Header.Get("Upload-Offset")
	u := newUploader(t, pki, c, gw, "gw-1", 0, 64<<10)
	if _, err := u.Upload(context.Background(), "S-1", path); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	t.Logf("child killed with %s of %d bytes stored; the new uploader sent %d", stored, st.Size(), u.Sent())
	if u.Sent() >= st.Size() {
		t.Fatalf("the upload started over: sent %d of %d", u.Sent(), st.Size())
	}
}

// TestUploadBandwidth measures the rate of a bounded upload at MaxRate
// (a figure, asserted loosely).
func TestUploadBandwidth(t *testing.T) {
	if testing.Short() {
		t.Skip("timing figure")
	}
	pki := certstest.NewMini(t)
	c := newCentral(t, pki)
	gw := pki.Gateway(t, "gw-1")
	path, head := makeRecording(t, t.TempDir(), "S-1", 1<<20)
	c.expect("gw-1", "S-1", head)
	const rate = 1 << 20
	u := newUploader(t, pki, c, gw, "gw-1", rate, 128<<10)
	start := time.Now()
	if _, err := u.Upload(context.Background(), "S-1", path); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	got := float64(u.Sent()) / el.Seconds()
	t.Logf("uploaded %d bytes in %s: %.0f B/s at max_rate %d B/s (%.2fx)", u.Sent(), el.Round(time.Millisecond), got, rate, got/rate)
	if got > 1.5*rate {
		t.Fatalf("rate %.0f B/s exceeds max_rate %d by more than half", got, rate)
	}
}

// TestRoundUploadsThenPrune: the uploader's round archives an ended
// recording whose session-end event is delivered, and only then may the
// store prune it.
func TestRoundUploadsThenPrune(t *testing.T) {
	pki := certstest.NewMini(t)
	c := newCentral(t, pki)
	gw := pki.Gateway(t, "gw-1")
	dir := t.TempDir()
	var up *upload.Uploader
	delivered := map[uint64]bool{}
	var mu sync.Mutex
	isDelivered := func(seq uint64) (bool, error) { mu.Lock(); defer mu.Unlock(); return delivered[seq], nil }
	store, err := recording.OpenStore(filepath.Join(dir, "recordings"), recording.StoreOptions{MaxBytes: 1 << 30,
		Delivered: isDelivered,
		Archived:  func(s string) (bool, error) { return up.Archived(s) }})
	if err != nil {
		t.Fatal(err)
	}
	w, err := store.Create("S-9", recording.Header{Session: "S-9", Grant: "G-9", Vendor: "spiffe://" + td + "/vendor/acme/bob", Device: "pump-07", Port: 23, Start: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Write(recording.FromDevice, time.Now(), []byte("login:"))
	head, err := w.Close(time.Now(), "ended")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ended("S-9", 42); err != nil {
		t.Fatal(err)
	}
	c.expect("gw-1", "S-9", head)
	up = newUploader(t, pki, c, gw, "gw-1", 0, 0, func(o *upload.Options) { o.Store, o.Delivered = store, isDelivered })
	ctx := context.Background()
	if n := up.Round(ctx); n != 0 {
		t.Fatalf("uploaded %d before the session-end event was delivered", n)
	}
	mu.Lock()
	delivered[42] = true
	mu.Unlock()
	// Delivered but not archived: a prune under pressure keeps it.
	small, err := recording.OpenStore(filepath.Join(dir, "recordings"), recording.StoreOptions{MaxBytes: 1,
		Delivered: isDelivered, Archived: func(s string) (bool, error) { return up.Archived(s) }})
	if err != nil {
		t.Fatal(err)
	}
	if n, _, err := small.Prune(); n != 0 || err != nil {
		t.Fatalf("pruned %d without a receipt (%v)", n, err)
	}
	if n := up.Round(ctx); n != 1 {
		t.Fatalf("round archived %d", n)
	}
	if n, _, err := small.Prune(); n != 1 || err != nil {
		t.Fatalf("prune with the receipt: %d %v", n, err)
	}
	if c.arch.Path("gw-1", "S-9") == "" {
		t.Fatal("not in the archive")
	}
}
