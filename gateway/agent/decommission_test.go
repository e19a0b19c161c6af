package agent

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/certs/stepcatest"
	"github.com/wardgate/wardgate/config"
)

// TestDecommissionRevokesAtStepCA runs decommission against the real
// step-ca with the broker unreachable: without --force it stops before
// revoking (the certificate still renews); with it the certificate is
// revoked (the CA refuses to renew it), the keys are wiped and the
// undelivered outbox is kept and reported.
func TestDecommissionRevokesAtStepCA(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real step-ca")
	}
	ca := stepcatest.New(t, stepcatest.Config{DefaultDur: time.Hour, MinDur: 5 * time.Minute, Provisioners: map[string]bool{"gateways": false}})
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	uri := certs.GatewayURI("hospital.example", "gw-d")
	if _, err := certs.Enroll(context.Background(), certs.EnrollOptions{CAURL: ca.URL, RootFingerprint: ca.Fingerprint(),
		Token: ca.Token("gateways", "gw-d", "gw-d", uri), Dir: certs.IdentityDir(state)}); err != nil {
		t.Fatalf("enroll: %v\n%s", err, ca.Log())
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broker := l.Addr().String()
	l.Close() // nothing answers: telemetry cannot be delivered
	text := fmt.Sprintf(`version: 1
gateway: {id: gw-d, site: lab, trust_domain: hospital.example, state_dir: %s, vendor_listen: "127.0.0.1:1", admin_socket: %s/admin.sock}
identity: {ca: step, ca_url: %q, root_fingerprint: %s, lifetime: 1h}
mqtt: {broker: "mqtts://%s"}
hal: {driver: sim}
devices: []
`, state, dir, ca.URL, ca.Fingerprint(), broker)
	cfg, err := config.Parse("d.yaml", []byte(text), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	renew := func() error {
		store := certs.NewStore(certs.IdentityDir(state))
		key, chain, err := store.Load()
		if err != nil {
			return err
		}
		roots, _ := store.LoadRoots()
		client, err := certs.NewStepClient(certs.StepClientOptions{URL: ca.URL, Bundle: certs.NewBundle(roots...), Timeout: 5 * time.Second})
		if err != nil {
			return err
		}
		tc, err := certs.TLSCertificate(key, chain)
		if err != nil {
			return err
		}
		_, err = client.Renew(context.Background(), tc)
		return err
	}
	// Keep a copy of the identity to try renewing after the wipe.
	saved := filepath.Join(dir, "saved-identity")
	if err := os.CopyFS(saved, os.DirFS(certs.IdentityDir(state))); err != nil {
		t.Fatal(err)
	}

	// Undelivered, not forced: nothing revoked or wiped.
	rep, err := Decommission(context.Background(), DecommissionOptions{Agent: Options{Config: cfg}, DeliveryTimeout: 500 * time.Millisecond})
	if !errors.Is(err, ErrUndelivered) || rep.Revoked != "" || rep.Queued == 0 {
		t.Fatalf("decommission with the broker down: %+v %v", rep, err)
	}
	if err := renew(); err != nil {
		t.Fatalf("the certificate no longer renews after a refused decommission: %v", err)
	}

	// Forced: revoked at the CA, keys wiped, undelivered outbox kept.
	rep, err = Decommission(context.Background(), DecommissionOptions{Agent: Options{Config: cfg}, DeliveryTimeout: 500 * time.Millisecond, Force: true})
	if err != nil {
		t.Fatalf("forced decommission: %v", err)
	}
	if rep.Revoked == "" || rep.Delivered {
		t.Fatalf("report %+v", rep)
	}
	out := rep.String()
	for _, want := range []string{"revoked at the CA", "wiped " + certs.IdentityDir(state), "kept  " + filepath.Join(state, "telemetry.db"), "NOT delivered"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(certs.IdentityDir(state)); !os.IsNotExist(err) {
		t.Errorf("identity not wiped: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "telemetry.db")); err != nil {
		t.Errorf("undelivered outbox not kept: %v", err)
	}
	// The CA refuses to renew the revoked certificate.
	if err := os.CopyFS(certs.IdentityDir(state), os.DirFS(saved)); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(certs.IdentityDir(state), certs.KeyFile), 0o600)
	if err := renew(); err == nil {
		t.Fatal("the CA still renews the decommissioned gateway's certificate")
	} else {
		t.Logf("renewal after decommission: %v", err)
	}
}

// TestDecommissionDelivered runs decommission against a real mosquitto:
// the final event and the backlog reach the broker, then every piece of
// state is wiped, the outbox and recordings included.
func TestDecommissionDelivered(t *testing.T) {
	if testing.Short() {
		t.Skip("runs mosquitto")
	}
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, serr := os.Stat(bin); serr != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("mosquitto is not installed (scripts/deps.sh installs it)")
			}
			t.Skip("mosquitto is not installed")
		}
	}
	ca, err := certs.NewDevCA(certs.DevCAOptions{Name: "decommission test"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The broker: a server certificate from the same CA, clients verified
	// against its root (no ACL: everything allowed).
	srv, err := ca.Issue(certs.IssueOptions{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var chainPEM []byte
	for _, der := range srv.Certificate {
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srv.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rootPEM := certs.EncodeCertsPEM([]*x509.Certificate{ca.Root(), ca.Intermediate()})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := write("mosquitto.conf", []byte(fmt.Sprintf("user root\nlistener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\nuse_identity_as_username true\nlog_dest file %s/mosquitto.log\n",
		port, write("ca.pem", rootPEM), write("server.pem", chainPEM), write("server.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})), dir)))
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "mosquitto.log"))
			t.Fatalf("mosquitto did not start: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond) // polling an external process
	}

	state := filepath.Join(dir, "state")
	text := fmt.Sprintf(`version: 1
gateway: {id: gw-d, site: lab, trust_domain: hospital.example, state_dir: %s, vendor_listen: "127.0.0.1:1", admin_socket: %s/admin.sock}
identity: {ca: dev, lifetime: 1h}
mqtt: {broker: "mqtts://127.0.0.1:%d"}
hal: {driver: sim}
devices: []
`, state, dir, port)
	cfg, err := config.Parse("d.yaml", []byte(text), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Decommission(context.Background(), DecommissionOptions{Agent: Options{Config: cfg, DevCA: ca}, DeliveryTimeout: 20 * time.Second})
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "mosquitto.log"))
		t.Fatalf("decommission: %v\n%+v\nmosquitto.log:\n%s", err, rep, log)
	}
	if !rep.Delivered || rep.FinalEventSeq == 0 || len(rep.Kept) != 0 {
		t.Fatalf("report %+v", rep)
	}
	out := rep.String()
	for _, want := range []string{"every queued message delivered", "wiped " + filepath.Join(state, "telemetry.db"), "wiped " + filepath.Join(state, "recordings"), "no CA to revoke at"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	left, _ := os.ReadDir(state)
	for _, f := range left {
		t.Logf("left in the state directory: %s", f.Name())
	}
	// The broker saw the gateway connect with its certificate.
	if log, _ := os.ReadFile(filepath.Join(dir, "mosquitto.log")); !strings.Contains(string(log), "gw-d") {
		t.Errorf("mosquitto never saw gw-d:\n%s", log)
	}
}
