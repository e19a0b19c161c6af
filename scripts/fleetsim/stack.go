package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/wire/brokertest"
)

// stack is what a simulation runs against: a development CA, mosquitto
// (TLS, client certificates, an ACL) and the wardgate-central binary on
// SQLite or a throwaway PostgreSQL, all under one temporary directory.
type stack struct {
	dir       string
	ca        *certs.DevCA
	brokerURL string
	base      string // central's HTTPS address
	log       string // central's log file
	// centralPID and brokerPID are for CPU accounting.
	centralPID, brokerPID int
	stops                 []func()
}

// newStack makes the directory and the CA; start runs the rest.
func newStack() (*stack, error) {
	dir, err := os.MkdirTemp("", "fleetsim-")
	if err != nil {
		return nil, err
	}
	ca, err := certs.NewDevCA(certs.DevCAOptions{Name: "fleetsim", Lifetime: 12 * time.Hour})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &stack{dir: dir, ca: ca}, nil
}

// close stops what start started, in reverse order, and removes the
// directory.
func (s *stack) close() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	os.RemoveAll(s.dir)
}

// start runs mosquitto with the production ACL (brokertest.MosquittoACL)
// and wardgate-central with centralExtra added to its central: map, and
// waits until central subscribed, asking
// its /metrics as operator (an approver certificate of s.ca).
func (s *stack) start(ctx context.Context, o opts, centralExtra string, operator tls.Certificate) error {
	root := filepath.Join(s.dir, "root.crt")
	if err := os.WriteFile(root, s.ca.Bundle().PEM(), 0o644); err != nil {
		return err
	}
	lo := []net.IP{net.IPv4(127, 0, 0, 1)}
	srv, err := s.ca.Issue(certs.IssueOptions{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: lo})
	if err != nil {
		return err
	}
	srvCert, srvKey, err := writePair(s.dir, "broker", srv)
	if err != nil {
		return err
	}
	cen, err := s.ca.Issue(certs.IssueOptions{URI: certs.ServiceURI(td, "central"), CommonName: "central", DNSNames: []string{"localhost"}, IPs: lo})
	if err != nil {
		return err
	}
	cenCert, cenKey, err := writePair(s.dir, "central", cen)
	if err != nil {
		return err
	}

	mport, err := freePort()
	if err != nil {
		return err
	}
	aclFile := filepath.Join(s.dir, "acl")
	if err := os.WriteFile(aclFile, []byte(brokertest.MosquittoACL), 0o600); err != nil {
		return err
	}
	conf := filepath.Join(s.dir, "mosquitto.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "user root\nmax_queued_messages 0\nmax_inflight_messages 0\nset_tcp_nodelay true\nlog_dest none\nlistener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\nuse_identity_as_username true\nacl_file %s\n",
		mport, root, srvCert, srvKey, aclFile), 0o600); err != nil {
		return err
	}
	mbin, err := exec.LookPath("mosquitto")
	if err != nil {
		mbin = "/usr/sbin/mosquitto"
	}
	mos := exec.CommandContext(ctx, mbin, "-c", conf)
	mos.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := mos.Start(); err != nil {
		return fmt.Errorf("start mosquitto: %w", err)
	}
	s.stops = append(s.stops, func() { _ = mos.Process.Kill(); _ = mos.Wait() })
	s.brokerURL, s.brokerPID = fmt.Sprintf("ssl://127.0.0.1:%d", mport), mos.Process.Pid

	db := "sqlite:" + filepath.Join(s.dir, "central.db")
	if o.db == "postgres" {
		if db, err = storetest.NewDatabase(); err != nil {
			return err
		}
	}
	hport, err := freePort()
	if err != nil {
		return err
	}
	cfg := filepath.Join(s.dir, "central.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `version: 1
central: {id: bench, trust_domain: %s, listen: "127.0.0.1:%d", db: %q%s}
tls: {cert: %s, key: %s, ca: %s}
mqtt: {brokers: [%q]}
ingest: {reorder_window: 5s, offline_after: 1h}
`, td, hport, db, centralExtra, cenCert, cenKey, root, s.brokerURL), 0o600); err != nil {
		return err
	}
	s.log = filepath.Join(s.dir, "central.log")
	logf, err := os.Create(s.log)
	if err != nil {
		return err
	}
	central := exec.CommandContext(ctx, o.central, "run", "--config", cfg)
	central.Stdout, central.Stderr = logf, logf
	central.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := central.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start central: %w", err)
	}
	s.stops = append(s.stops, func() { _ = central.Process.Signal(syscall.SIGTERM); _ = central.Wait(); logf.Close() })
	s.base, s.centralPID = fmt.Sprintf("https://127.0.0.1:%d", hport), central.Process.Pid
	api := &metricsClient{url: s.base + "/metrics", c: s.client(operator, 5*time.Second)}
	if err := api.await(ctx, 30*time.Second, func(m map[string]float64) bool { return m["wardgate_central_mqtt_connected"] == 1 }); err != nil {
		log, _ := os.ReadFile(s.log)
		return fmt.Errorf("central did not subscribe: %w\n%s", err, tail(log))
	}
	return nil
}

// client is an HTTPS client of central presenting cert.
func (s *stack) client(cert tls.Certificate, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.Bundle().Pool(),
		Certificates: []tls.Certificate{cert}}}}
}
