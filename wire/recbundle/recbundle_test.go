package recbundle_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/recbundle"
	"github.com/wardgate/wardgate/wire/recchain"
	"github.com/wardgate/wardgate/wire/receipt"
)

// Fixture makes a recording, its gateway-signed session-end event and
// central's receipt.
type fixture struct {
	pki           *certstest.MiniPKI
	central       *certstest.Identity
	rec, ev, rcpt []byte
	head          []byte
	gateway, sess string
	frames        int
}

func newFixture(t testing.TB) *fixture {
	pki := certstest.NewMini(t)
	f := &fixture{pki: pki, central: pki.Issue(t, "central", "spiffe://"+certstest.MiniTrustDomain+"/svc/central"), gateway: "gw-1", sess: "S-1"}
	var prev [32]byte
	now := time.Now()
	var buf bytes.Buffer
	for i, b := range []recchain.Body{
		{Type: recchain.TypeHeader, Time: now.UnixNano(), Header: &recchain.Header{Session: f.sess, Device: "pump-07", Port: 23, Start: now}},
		{Type: recchain.TypeData, Time: now.Add(time.Second).UnixNano(), Dir: recchain.ToDevice, Data: []byte("login\n")},
		{Type: recchain.TypeTrailer, Time: now.Add(2 * time.Second).UnixNano(), Trailer: &recchain.Trailer{End: now.Add(2 * time.Second), ToDevice: 6, Frames: 3}},
	} {
		out, err := recchain.EncodeFrame(&prev, b)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(out)
		f.frames = i + 1
	}
	f.rec, f.head = buf.Bytes(), prev[:]
	gw := pki.Gateway(t, f.gateway)
	body, _ := envelope.Marshal(wire.Event{Kind: "vendor.session_end", Severity: "info",
		Attrs: map[string]string{"session": f.sess, "hash": hex.EncodeToString(f.head)}})
	payload, err := envelope.EncodePayload(&envelope.Envelope{Version: envelope.Version, Gateway: f.gateway, Session: 1, Seq: 9,
		Time: now.UnixMilli(), Kind: envelope.KindEvent, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if f.ev, err = envelope.Sign(gw.Key, gw.Chain, payload); err != nil {
		t.Fatal(err)
	}
	if f.rcpt, err = receipt.Sign(f.central.Key, f.central.Chain, receipt.Receipt{Gateway: f.gateway, Session: f.sess, Head: f.head,
		Size: int64(len(f.rec)), Stored: now.UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) bundle(t testing.TB, mod func(*recbundle.Contents)) []byte {
	c := recbundle.Contents{Gateway: f.gateway, Session: f.sess, Exporter: "spiffe://hospital.example/approver/security/ann",
		Created: time.Now(), SessionEnd: f.ev, Receipt: f.rcpt, Recording: bytes.NewReader(f.rec), Size: int64(len(f.rec)),
		Head: f.head, Frames: f.frames}
	if mod != nil {
		mod(&c)
	}
	sum := sha256.Sum256(f.rec)
	var out bytes.Buffer
	if err := recbundle.Write(&out, f.central.Key, f.central.Chain, c, sum[:]); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// rewrite returns b with member name's bytes passed through fn.
func rewrite(t testing.TB, b []byte, fn func(name string, data []byte) []byte) []byte {
	tr := tar.NewReader(bytes.NewReader(b))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		data = fn(h.Name, data)
		if data == nil {
			continue
		}
		h.Size = int64(len(data))
		_ = tw.WriteHeader(h)
		_, _ = tw.Write(data)
	}
	_ = tw.Close()
	return out.Bytes()
}

func TestBundleVerifies(t *testing.T) {
	f := newFixture(t)
	b := f.bundle(t, nil)
	rep, err := recbundle.Verify(bytes.NewReader(b), f.pki.Roots(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Anchored || rep.Recording.Frames != 3 || !strings.HasSuffix(rep.Central, "/svc/central") || !strings.HasSuffix(rep.Gateway, "/gateway/gw-1") ||
		rep.Manifest.Session != "S-1" {
		t.Fatalf("report %+v", rep)
	}
	if rep, err := recbundle.Verify(bytes.NewReader(b), nil, nil); err != nil || rep.Anchored {
		t.Fatalf("unanchored: %+v %v", rep, err)
	}
}

func TestBundleTamperedFails(t *testing.T) {
	f := newFixture(t)
	good := f.bundle(t, nil)
	flip := func(name string, at func(int) int) []byte {
		return rewrite(t, good, func(n string, d []byte) []byte {
			if n == name {
				d = bytes.Clone(d)
				d[at(len(d))] ^= 0x01
			}
			return d
		})
	}
	other := certstest.NewMini(t)
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"recording byte", flip(recbundle.NameRecording, func(n int) int { return n / 2 }), "recording.cbor"},
		{"recording cut", rewrite(t, good, func(n string, d []byte) []byte {
			if n == recbundle.NameRecording {
				return d[:len(d)-5]
			}
			return d
		}), "recording.cbor"},
		{"event", flip(recbundle.NameSessionEnd, func(n int) int { return n - 3 }), "session-end.cose"},
		{"receipt", flip(recbundle.NameReceipt, func(n int) int { return n - 3 }), "receipt.cose"},
		{"readme", flip(recbundle.NameReadme, func(n int) int { return 0 }), "README.txt differs"},
		{"manifest", flip(recbundle.NameManifest, func(n int) int { return n - 3 }), "manifest.cose"},
		{"member dropped", rewrite(t, good, func(n string, d []byte) []byte {
			if n == recbundle.NameReceipt {
				return nil
			}
			return d
		}), "missing"},
		{"another recording", f.bundle(t, func(c *recbundle.Contents) {
			c.Recording = bytes.NewReader(bytes.Repeat([]byte{0}, len(f.rec)))
		}), "recording.cbor"},
		{"not a tar", []byte("hello"), "not a bundle"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := recbundle.Verify(bytes.NewReader(c.b), f.pki.Roots(), nil)
			if !errors.Is(err, recbundle.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	if _, err := recbundle.Verify(bytes.NewReader(good), other.Roots(), nil); !errors.Is(err, recbundle.ErrInvalid) {
		t.Fatalf("verified against another root: %v", err)
	}
	if _, err := recbundle.Verify(bytes.NewReader(rewrite(t, good, func(n string, d []byte) []byte { return d })), f.pki.Roots(), nil); err != nil {
		t.Fatalf("re-tarred bundle: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	f.Add(fx.bundle(f, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = recbundle.Verify(bytes.NewReader(b), nil, nil)
	})
}
