package main

// Recordings upload beside the clinical path: the relay process also runs
// the gateway's uploader (gateway/upload, as the agent does), sending
// recordings to central's archive (central/archive, in a third process)
// at a bounded rate. Clinical throughput with and without the upload is
// measured alternately; the target is >= 0.9x.

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wardgate/wardgate/central/archive"
	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/gateway/access/recording"
	gwupload "github.com/wardgate/wardgate/gateway/upload"
	"github.com/wardgate/wardgate/wire/envelope"
)

const (
	benchTD      = "hospital.example"
	benchGateway = "gw-bench"
	// recordings the uploader has to send: more than any rate below
	// gets through during the clinical runs.
	uploadRecordings = 8
	uploadRecordSize = 16 << 20
)

// makeUploadPKI adds the gateway's and central's certificates to dir.
func makeUploadPKI(ca *certs.DevCA, dir string) error {
	gw, err := ca.Issue(certs.IssueOptions{URI: certs.GatewayURI(benchTD, benchGateway), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return err
	}
	cen, err := ca.Issue(certs.IssueOptions{URI: certs.ServiceURI(benchTD, "central"), DNSNames: []string{"localhost"},
		IPs: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return err
	}
	for name, c := range map[string]tls.Certificate{"gateway": gw, "central": cen} {
		k, err := certs.EncodeKeyPEM(c.PrivateKey.(crypto.Signer))
		if err != nil {
			return err
		}
		if err := errors.Join(writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", c.Certificate...),
			os.WriteFile(filepath.Join(dir, name+".key"), k, 0o600)); err != nil {
			return err
		}
	}
	return nil
}

// makeRecordings writes closed recordings of random bytes into
// dir/recordings and each one's final hash into dir/heads/SESSION.
func makeRecordings(dir string) error {
	for _, d := range []string{"recordings", "heads"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	buf := make([]byte, 32<<10)
	for i := range uploadRecordings {
		session := fmt.Sprintf("S-%02d", i)
		w, err := recording.Create(filepath.Join(dir, "recordings", session+".cbor"), recording.Header{Session: session, Grant: "G-" + session,
			Vendor: certs.VendorURI(benchTD, "acme", "bob"), Device: "bench", Port: 23, Start: time.Now()}, nil)
		if err != nil {
			return err
		}
		for n := 0; n < uploadRecordSize; n += len(buf) {
			_, _ = rand.Read(buf)
			if err := w.Write(recording.ToDevice, time.Now(), buf); err != nil {
				return err
			}
		}
		head, err := w.Close(time.Now(), "vendor disconnected")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "heads", session), []byte(hex.EncodeToString(head)), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func loadTLS(dir, name string) (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root.crt"))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	return cert, pool, nil
}

// serveArchive is the archive child: central's recordings archive over
// HTTPS with mTLS, storing into dir/archive.
func serveArchive(listen, dir string) error {
	cert, pool, err := loadTLS(dir, "central")
	if err != nil {
		return err
	}
	var chain []*x509.Certificate
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		chain = append(chain, c)
	}
	arch, err := archive.New(archive.Options{Dir: filepath.Join(dir, "archive"), TrustDomain: benchTD,
		ExpectedHead: func(_ context.Context, _, session string) ([]byte, error) {
			h, err := os.ReadFile(filepath.Join(dir, "heads", filepath.Base(session)))
			if err != nil {
				return nil, archive.ErrUnknownSession
			}
			return hex.DecodeString(string(h))
		},
		Signer: func() (crypto.Signer, []*x509.Certificate) { return cert.PrivateKey.(crypto.Signer), chain },
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: arch, ReadHeaderTimeout: 10 * time.Second, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	announce(ln)
	waitSignal()
	return srv.Close()
}

// runUploader uploads dir/recordings to url at rate bytes/s, one after the
// other, until ctx ends or all are archived. It runs inside the relay
// process.
func runUploader(ctx context.Context, url, dir string, rate int64) error {
	cert, pool, err := loadTLS(dir, "gateway")
	if err != nil {
		return err
	}
	roots := envelope.RootsVerifier(pool)
	u, err := gwupload.New(gwupload.Options{URL: url, GatewayID: benchGateway, MaxRate: rate,
		ReceiptDir: filepath.Join(dir, "receipts"),
		TLSConfig: func() *tls.Config {
			return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "localhost"}
		},
		VerifyReceipt: func(chain []*x509.Certificate, now time.Time) (string, error) {
			id, err := roots(chain, now)
			if err == nil && id != certs.ServiceURI(benchTD, "central") {
				err = fmt.Errorf("receipt signed by %s, not central", id)
			}
			return id, err
		}})
	if err != nil {
		return err
	}
	paths, err := filepath.Glob(filepath.Join(dir, "recordings", "*.cbor"))
	if err != nil {
		return err
	}
	slices.Sort(paths)
	for _, p := range paths {
		if _, err := u.Upload(ctx, strings.TrimSuffix(filepath.Base(p), ".cbor"), p); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	return nil
}

// archivedBytes is what the archive stored so far (parts and finished).
func archivedBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(filepath.Join(dir, "archive"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(d.Name(), ".cbor") || strings.HasSuffix(d.Name(), ".cbor.part")) {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// benchUploadBeside measures clinical throughput through a relay that
// uploads recordings at each rate, alternating with the relay that does
// not (base), and prints one table.
func benchUploadBeside(dir, be string, base *target, clientTLS *tls.Config, size int64) error {
	if err := makeRecordings(dir); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Println()
	fmt.Printf("Recordings upload beside the clinical relay: the relay process also uploads %d recordings of %d MiB to\n", uploadRecordings, uploadRecordSize>>20)
	fmt.Printf("central's archive (HTTPS, mTLS, chunked, receipts) at the rate given; clinical runs alternate with the\n")
	fmt.Printf("relay that does not upload (median of 5 each). The default rate is gateway.recordings.upload.max_rate's.\n\n")
	fmt.Println("| upload max_rate | upload achieved | clinical upload MB/s (without / with) | clinical download MB/s (without / with) | ratio up | ratio down | target |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---|")
	for _, rate := range []int64{256 << 10, 8 << 20} {
		_ = os.RemoveAll(filepath.Join(dir, "archive"))
		_ = os.RemoveAll(filepath.Join(dir, "receipts"))
		arch, err := startChild(self, "-mode", "archive", "-dir", dir)
		if err != nil {
			return err
		}
		rl, err := startChild(self, "-mode", "serve", "-backend", be, "-dir", dir,
			"-upload", "https://"+arch.addr, "-upload-rate", fmt.Sprint(rate))
		if err != nil {
			arch.stop()
			return err
		}
		with := &target{name: "with upload", addr: rl.addr, tls: clientTLS, proc: rl}
		var bu, wu, bd, wd []float64
		start, sent0 := time.Now(), archivedBytes(dir)
		for range 5 {
			for _, m := range []struct {
				t   *target
				out *[]float64
				f   func(*target, int64) (float64, error)
			}{{base, &bu, upload}, {with, &wu, upload}, {base, &bd, download}, {with, &wd, download}} {
				v, err := m.f(m.t, size)
				if err != nil {
					rl.stop()
					arch.stop()
					return fmt.Errorf("upload beside clinical (%s): %w", m.t.name, err)
				}
				*m.out = append(*m.out, v)
			}
		}
		achieved := float64(archivedBytes(dir)-sent0) / time.Since(start).Seconds()
		rl.stop()
		arch.stop()
		med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
		fmt.Printf("| %d KiB/s | %.0f KiB/s | %.0f / %.0f | %.0f / %.0f | %.2fx | %.2fx | >= 0.9x |\n", rate>>10, achieved/1024,
			med(bu), med(wu), med(bd), med(wd), med(wu)/med(bu), med(wd)/med(bd))
	}
	return nil
}
