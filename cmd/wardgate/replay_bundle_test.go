package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/recbundle"
	"github.com/wardgate/wardgate/wire/receipt"
)

// TestReplayBundle: `wardgate replay` verifies central's export bundle
// offline, with and without a trust anchor, refuses a modified one, and
// the by-hand path (tar xf; replay --expect) agrees.
func TestReplayBundle(t *testing.T) {
	dir := t.TempDir()
	pki := certstest.NewMini(t)
	central := pki.Issue(t, "central", "spiffe://"+certstest.MiniTrustDomain+"/svc/central")
	gw := pki.Gateway(t, "gw-1")
	start := time.Now()
	path := filepath.Join(dir, "S-1.cbor")
	w, err := recording.Create(path, recording.Header{Session: "S-1", Grant: "G-1", Vendor: "spiffe://hospital.example/vendor/acme/jane", Device: "pump-07", Port: 23, Start: start}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Write(recording.ToDevice, start.Add(time.Second), []byte("STATUS\r\n"))
	_ = w.Write(recording.FromDevice, start.Add(2*time.Second), []byte("E-104 occlusion cleared\r\n"))
	head, err := w.Close(start.Add(3*time.Second), "vendor closed")
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := os.ReadFile(path)
	body, _ := envelope.Marshal(wire.Event{Kind: "vendor.session_end", Severity: "info", Attrs: map[string]string{"session": "S-1", "hash": hex.EncodeToString(head)}})
	payload, _ := envelope.EncodePayload(&envelope.Envelope{Version: envelope.Version, Gateway: "gw-1", Session: 1, Seq: 5, Time: start.UnixMilli(), Kind: envelope.KindEvent, Body: body})
	ev, err := envelope.Sign(gw.Key, gw.Chain, payload)
	if err != nil {
		t.Fatal(err)
	}
	rcpt, _ := receipt.Sign(central.Key, central.Chain, receipt.Receipt{Gateway: "gw-1", Session: "S-1", Head: head, Size: int64(len(rec)), Stored: start.UnixMilli()})
	var b bytes.Buffer
	sum := sha256.Sum256(rec)
	if err := recbundle.Write(&b, central.Key, central.Chain, recbundle.Contents{Gateway: "gw-1", Session: "S-1", Exporter: "spiffe://hospital.example/approver/security/ann",
		Created: start, SessionEnd: ev, Receipt: rcpt, Recording: bytes.NewReader(rec), Size: int64(len(rec)), Head: head, Frames: 4}, sum[:]); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "gw-1-S-1.tar")
	_ = os.WriteFile(bundle, b.Bytes(), 0o600)
	root := pki.WriteRoot(t, dir)

	code, out, errs := runCLI(t, "", "replay", "--ca", root, "--expect", hex.EncodeToString(head), bundle)
	if code != exitOK || !strings.Contains(out, "bundle verified: gw-1/S-1") || !strings.Contains(out, "occlusion") || strings.Contains(out, "WARNING") ||
		!strings.Contains(out, "final hash matches") {
		t.Fatalf("replay bundle: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := runCLI(t, "", "replay", "--text", bundle); code != exitOK || !strings.Contains(out, "WARNING") || !strings.Contains(out, "<< E-104") {
		t.Fatalf("unanchored: exit %d\n%s", code, out)
	}
	if code, _, errs := runCLI(t, "", "replay", "--ca", root, "--expect", strings.Repeat("00", 32), bundle); code != exitFailure || !strings.Contains(errs, "does not match") {
		t.Fatalf("wrong --expect: exit %d %s", code, errs)
	}
	other := certstest.NewMini(t)
	if code, _, errs := runCLI(t, "", "replay", "--ca", other.WriteRoot(t, t.TempDir()), bundle); code != exitFailure || !strings.Contains(errs, "does not verify") {
		t.Fatalf("other root: exit %d %s", code, errs)
	}
	// A modified bundle fails: one byte of the recording inside it.
	data := bytes.Clone(b.Bytes())
	i := bytes.Index(data, []byte("occlusion"))
	data[i] ^= 0x20
	modified := filepath.Join(dir, "modified.tar")
	_ = os.WriteFile(modified, data, 0o600)
	if code, _, errs := runCLI(t, "", "replay", "--ca", root, modified); code != exitFailure || !strings.Contains(errs, "recording.cbor") {
		t.Fatalf("modified bundle: exit %d %s", code, errs)
	}
	// By hand: extract the recording and check it against the event's hash.
	tr := tar.NewReader(bytes.NewReader(b.Bytes()))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == recbundle.NameRecording {
			got, _ := io.ReadAll(tr)
			_ = os.WriteFile(filepath.Join(dir, "recording.cbor"), got, 0o600)
			break
		}
	}
	if code, out, errs := runCLI(t, "", "replay", "--expect", hex.EncodeToString(head), filepath.Join(dir, "recording.cbor")); code != exitOK || !strings.Contains(out, "final hash matches") {
		t.Fatalf("by hand: exit %d %s%s", code, out, errs)
	}
	if code, _, _ := runCLI(t, "", "replay", "--ca", root, filepath.Join(dir, "recording.cbor")); code != exitUsage {
		t.Fatalf("--ca with a plain recording: exit %d", code)
	}
}
