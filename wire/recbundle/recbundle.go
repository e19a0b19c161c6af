// Package recbundle is the signed export bundle of an archived vendor
// session recording, for auditors: one uncompressed tar file that central
// writes (Write) and `wardgate replay` verifies offline (Verify).
//
// Members, in this order:
//
//	manifest.cose     COSE_Sign1 by central (spiffe://TD/svc/central) over a
//	                  CBOR Manifest: gateway, session, final hash, frames,
//	                  who exported it and when, and the SHA-256 and size of
//	                  every other member
//	session-end.cose  the gateway's signed vendor.session_end event, as
//	                  central received it (its attrs carry the final hash)
//	receipt.cose      central's archive receipt (binds gateway, session,
//	                  final hash and size)
//	README.txt        how to verify by hand
//	recording.cbor    the recording (wire/recchain format), last
//
// By hand: `tar xf BUNDLE; wardgate replay --expect HASH recording.cbor`
// with HASH from the session-end event. Verify does all of it: every
// signature, every member's digest, the event's and the receipt's binding
// of the same gateway, session and hash, and the recording's chain.
// Certificates are short-lived, so each signer's chain is checked at the
// time its document states it was signed.
//
// Write and Verify are safe for concurrent use; Verify reads untrusted
// bytes and never panics.
package recbundle

import (
	"archive/tar"
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/recchain"
	"github.com/wardgate/wardgate/wire/receipt"
)

// Member names.
const (
	NameManifest   = "manifest.cose"
	NameSessionEnd = "session-end.cose"
	NameReceipt    = "receipt.cose"
	NameReadme     = "README.txt"
	NameRecording  = "recording.cbor"
)

// ErrInvalid is wrapped by every verification failure.
var ErrInvalid = errors.New("recording bundle does not verify")

// File is a member's digest.
type File struct {
	Name   string `cbor:"1,keyasint"`
	Size   int64  `cbor:"2,keyasint"`
	SHA256 []byte `cbor:"3,keyasint"`
}

// Manifest is the signed table of contents.
type Manifest struct {
	Version  int    `cbor:"1,keyasint"`
	Gateway  string `cbor:"2,keyasint"`
	Session  string `cbor:"3,keyasint"`
	Head     []byte `cbor:"4,keyasint"` // the recording's final hash
	Frames   int    `cbor:"5,keyasint"`
	Created  int64  `cbor:"6,keyasint"` // ms since epoch
	Exporter string `cbor:"7,keyasint"` // the operator who exported it
	Files    []File `cbor:"8,keyasint"`
}

// Contents are the members Write bundles.
type Contents struct {
	Gateway, Session string
	Exporter         string
	Created          time.Time
	SessionEnd       []byte // COSE bytes as received
	Receipt          []byte
	// Recording is read once; Size must be its length.
	Recording io.Reader
	Size      int64
	// Head and Frames as the archive verified them.
	Head   []byte
	Frames int
}

func readme(c Contents) []byte {
	return fmt.Appendf(nil, `Vendor session recording %s of gateway %s, exported by %s at %s.

Verify everything at once (signatures, digests, chain):
    wardgate replay --ca ROOT_CA.crt THIS_BUNDLE.tar

Or by hand:
    tar xf THIS_BUNDLE.tar
    wardgate replay --text --expect %s recording.cbor
The expected hash is the "hash" attribute of the gateway's signed
session-end event (session-end.cose); receipt.cose is central's signed
receipt for the same hash; manifest.cose lists the SHA-256 of every file.
`, c.Session, c.Gateway, c.Exporter, c.Created.UTC().Format(time.RFC3339), hex.EncodeToString(c.Head))
}

// Write writes the bundle of c to w, signing the manifest with key and
// chain (central's identity, leaf first). The manifest comes first, so the
// recording's digest (recordingSHA256, of its c.Size bytes) is computed by
// the caller beforehand; the recording is then copied once.
func Write(w io.Writer, key crypto.Signer, chain []*x509.Certificate, c Contents, recordingSHA256 []byte) error {
	rd := readme(c)
	sum := func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
	m := Manifest{Version: 1, Gateway: c.Gateway, Session: c.Session, Head: c.Head, Frames: c.Frames,
		Created: c.Created.UnixMilli(), Exporter: c.Exporter, Files: []File{
			{NameSessionEnd, int64(len(c.SessionEnd)), sum(c.SessionEnd)},
			{NameReceipt, int64(len(c.Receipt)), sum(c.Receipt)},
			{NameReadme, int64(len(rd)), sum(rd)},
			{NameRecording, c.Size, recordingSHA256},
		}}
	payload, err := envelope.Marshal(&m)
	if err != nil {
		return fmt.Errorf("bundle manifest: %w", err)
	}
	signed, err := envelope.Sign(key, chain, payload)
	if err != nil {
		return fmt.Errorf("bundle manifest: %w", err)
	}
	tw := tar.NewWriter(w)
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: c.Created.Truncate(time.Second), Format: tar.FormatPAX}
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{{NameManifest, signed}, {NameSessionEnd, c.SessionEnd}, {NameReceipt, c.Receipt}, {NameReadme, rd}} {
		if err := tw.WriteHeader(hdr(f.name, int64(len(f.b)))); err != nil {
			return err
		}
		if _, err := tw.Write(f.b); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(hdr(NameRecording, c.Size)); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, c.Recording, c.Size); err != nil {
		return fmt.Errorf("bundle recording: %w", err)
	}
	return tw.Close()
}

// Report is what Verify established.
type Report struct {
	Manifest Manifest
	// Central signed the manifest and the receipt; Gateway the event.
	Central, Gateway string
	Recording        *recchain.Decoded
	// Anchored is false when no roots were given: signatures are valid
	// under the certificates in the bundle, which are not checked
	// against a trust anchor.
	Anchored bool
	Receipt  *receipt.Receipt
}

// Limits on members other than the recording.
const maxSmall = 1 << 20

// Verify reads a bundle from r and checks it. roots verifies signer chains
// (nil: not anchored; Report.Anchored says so). replay, when not nil,
// reads the recording instead of recchain.Verify (to print it while it
// is verified; it must read to the end and return the verified summary).
func Verify(r io.Reader, roots *x509.CertPool, replay func(io.Reader) (*recchain.Decoded, error)) (*Report, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	rep := &Report{Anchored: roots != nil}
	verify := unanchored
	if roots != nil {
		verify = envelope.RootsVerifier(roots)
	}
	if replay == nil {
		replay = func(r io.Reader) (*recchain.Decoded, error) { return recchain.Verify(r, nil) }
	}
	tr := tar.NewReader(r)
	small := map[string][]byte{}
	var man *Manifest
	want := map[string]File{}
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return rep, bad("not a bundle (tar): %v", err)
		}
		if i == 0 && h.Name != NameManifest {
			return rep, bad("first member is %q, not %s", h.Name, NameManifest)
		}
		if _, dup := small[h.Name]; dup || (h.Name == NameRecording && rep.Recording != nil) {
			return rep, bad("member %q twice", h.Name)
		}
		if h.Name == NameRecording {
			f, ok := want[NameRecording]
			if !ok {
				return rep, bad("the manifest does not list %s", NameRecording)
			}
			hs := sha256.New()
			cr := &countReader{r: io.TeeReader(tr, hs)}
			dec, rerr := replay(cr)
			_, _ = io.Copy(io.Discard, cr)
			if rerr != nil {
				return rep, bad("%s: %v", NameRecording, rerr)
			}
			if cr.n != f.Size || !bytes.Equal(hs.Sum(nil), f.SHA256) {
				return rep, bad("%s differs from the manifest's digest", NameRecording)
			}
			rep.Recording = dec
			continue
		}
		if h.Size > maxSmall {
			return rep, bad("member %q is %d bytes", h.Name, h.Size)
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxSmall))
		if err != nil {
			return rep, bad("%s: %v", h.Name, err)
		}
		small[h.Name] = b
		if i == 0 {
			man, rep.Central, err = verifyManifest(b, verify)
			if err != nil {
				return rep, bad("%s: %v", NameManifest, err)
			}
			rep.Manifest = *man
			for _, f := range man.Files {
				want[f.Name] = f
			}
			continue
		}
		f, ok := want[h.Name]
		if !ok {
			return rep, bad("member %q is not in the manifest", h.Name)
		}
		if s := sha256.Sum256(b); int64(len(b)) != f.Size || !bytes.Equal(s[:], f.SHA256) {
			return rep, bad("%s differs from the manifest's digest", h.Name)
		}
	}
	if man == nil {
		return rep, bad("empty bundle")
	}
	for name := range want {
		if _, ok := small[name]; !ok && !(name == NameRecording && rep.Recording != nil) {
			return rep, bad("member %s listed in the manifest is missing", name)
		}
	}
	for _, name := range []string{NameSessionEnd, NameReceipt, NameRecording} {
		if _, ok := want[name]; !ok {
			return rep, bad("the manifest does not list %s", name)
		}
	}
	// The gateway's signed session-end event names the same hash.
	m, err := verifyAtOwnTime(small[NameSessionEnd], verify)
	if err != nil {
		return rep, bad("%s: %v", NameSessionEnd, err)
	}
	rep.Gateway = m.Signer
	var ev wire.Event
	if m.Kind != envelope.KindEvent || envelope.Unmarshal(m.Body, &ev) != nil || ev.Kind != "vendor.session_end" {
		return rep, bad("%s is not a vendor.session_end event", NameSessionEnd)
	}
	head := hex.EncodeToString(man.Head)
	if m.Gateway != man.Gateway || ev.Attrs["session"] != man.Session || !strings.EqualFold(ev.Attrs["hash"], head) {
		return rep, bad("the session-end event is of %s/%s with hash %s, the manifest says %s/%s with %s",
			m.Gateway, ev.Attrs["session"], ev.Attrs["hash"], man.Gateway, man.Session, head)
	}
	// The recording ends in that hash.
	if !bytes.Equal(rep.Recording.FinalHash, man.Head) {
		return rep, bad("the recording ends in %x, the signed session-end event says %s", rep.Recording.FinalHash, head)
	}
	// Central's receipt binds the same recording.
	rs, err := envelope.Parse(small[NameReceipt])
	if err != nil {
		return rep, bad("%s: %v", NameReceipt, err)
	}
	var rc receipt.Receipt
	if err := envelope.Unmarshal(rs.Payload, &rc); err != nil {
		return rep, bad("%s: %v", NameReceipt, err)
	}
	rep.Receipt, _, err = receipt.Verify(small[NameReceipt], verify, time.UnixMilli(rc.Stored), man.Gateway, man.Session, man.Head, want[NameRecording].Size)
	if err != nil {
		return rep, bad("%s: %v", NameReceipt, err)
	}
	return rep, nil
}

func verifyManifest(b []byte, verify envelope.ChainVerifier) (*Manifest, string, error) {
	s, err := envelope.Parse(b)
	if err != nil {
		return nil, "", err
	}
	if err := s.VerifySignature(); err != nil {
		return nil, "", err
	}
	var m Manifest
	if err := envelope.Unmarshal(s.Payload, &m); err != nil {
		return nil, "", err
	}
	if m.Version != 1 {
		return nil, "", fmt.Errorf("manifest version %d (this build reads 1)", m.Version)
	}
	who, err := verify(s.Chain, time.UnixMilli(m.Created))
	if err != nil {
		return nil, "", fmt.Errorf("signer: %w", err)
	}
	if !strings.Contains(who, "/svc/") {
		return nil, "", fmt.Errorf("signed by %s, not central's service identity", who)
	}
	return &m, who, nil
}

// verifyAtOwnTime verifies a telemetry message's chain at the time the
// message states.
func verifyAtOwnTime(b []byte, verify envelope.ChainVerifier) (*envelope.Message, error) {
	s, err := envelope.Parse(b)
	if err != nil {
		return nil, err
	}
	env, err := envelope.DecodePayload(s.Payload)
	if err != nil {
		return nil, err
	}
	return envelope.Verify(b, verify, time.UnixMilli(env.Time))
}

// unanchored accepts any chain whose certificates chain to each other and
// names the leaf: the signatures are then only as good as the bundle.
func unanchored(chain []*x509.Certificate, now time.Time) (string, error) {
	pool := x509.NewCertPool()
	pool.AddCert(chain[len(chain)-1])
	return envelope.RootsVerifier(pool)(chain, now)
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
