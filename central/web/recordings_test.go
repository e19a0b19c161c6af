package web

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/central/archive"
	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/recbundle"
	"github.com/wardgate/wardgate/wire/recchain"
)

// recFixture is a store with one archived recording (gw-1/S-1, uploaded
// through the archive's handler) and one awaiting upload (gw-1/S-2).
type recFixture struct {
	st   *store.Store
	srv  *Server
	pki  *certstest.MiniPKI
	arch *archive.Archive
}

func newRecFixture(t *testing.T, dsn string, clock clockwork.Clock) *recFixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pki := certstest.NewMini(t)
	gw := pki.Gateway(t, "gw-1")
	central := pki.Issue(t, "central", "spiffe://hospital.example/svc/central")
	start := clock.Now().Add(-10 * time.Second) // after the certificates' NotBefore (minica issues from now)
	var prev [32]byte
	var rec bytes.Buffer
	for _, b := range []recchain.Body{
		{Type: recchain.TypeHeader, Time: start.UnixNano(), Header: &recchain.Header{Session: "S-1", Grant: "G-1", Device: "pump-07", Port: 23, Start: start,
			Vendor: "spiffe://hospital.example/vendor/acme/bob"}},
		{Type: recchain.TypeData, Time: start.Add(100 * time.Millisecond).UnixNano(), Dir: recchain.ToDevice, Data: []byte("STATUS\r\n")},
		{Type: recchain.TypeData, Time: start.Add(500 * time.Millisecond).UnixNano(), Dir: recchain.FromDevice, Data: []byte("E-104 occlusion cleared\r\n\x00\x01")},
		{Type: recchain.TypeNote, Time: start.Add(700 * time.Millisecond).UnixNano(), Note: &recchain.Note{Kind: recchain.NoteInject, Text: "logged in as acme-svc"}},
		{Type: recchain.TypeData, Time: start.Add(time.Second).UnixNano(), Dir: recchain.ToDevice, Data: []byte("QUIT <script>alert(1)</script>\r\n")},
		{Type: recchain.TypeTrailer, Time: start.Add(2 * time.Second).UnixNano(), Trailer: &recchain.Trailer{End: start.Add(2 * time.Second), Frames: 6}},
	} {
		out, err := recchain.EncodeFrame(&prev, b)
		if err != nil {
			t.Fatal(err)
		}
		rec.Write(out)
	}
	sign := func(seq uint64, session string, head []byte) []byte {
		body, _ := envelope.Marshal(wire.Event{Kind: "vendor.session_end", Severity: "info", Attrs: map[string]string{"session": session, "hash": hex.EncodeToString(head)}})
		p, err := envelope.EncodePayload(&envelope.Envelope{Version: envelope.Version, Gateway: "gw-1", Session: 1, Seq: seq, Time: start.UnixMilli(), Kind: envelope.KindEvent, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		b, err := envelope.Sign(gw.Key, gw.Chain, p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := st.Apply(ctx, func(tx *store.Tx) error {
		if err := tx.PutGateway(store.Gateway{ID: "gw-1", Site: "st-a"}); err != nil {
			return err
		}
		for i, s := range []string{"S-1", "S-2"} {
			if err := tx.PutRecordingEnd(store.Recording{Gateway: "gw-1", Session: s, Grant: "G-1", Device: "pump-07", Vendor: "spiffe://hospital.example/vendor/acme/bob",
				Seq: uint64(7 + i), Ended: start.Add(time.Duration(i) * time.Minute), Received: start, Hash: hex.EncodeToString(prev[:]), EventCOSE: sign(uint64(7+i), s, prev[:])}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	signer := func() (crypto.Signer, []*x509.Certificate) { return central.Key, central.Chain }
	arch, err := archive.New(archive.Options{Dir: filepath.Join(t.TempDir(), "rec"), TrustDomain: "hospital.example", Signer: signer, Clock: clock,
		ExpectedHead: func(ctx context.Context, gw, session string) ([]byte, error) {
			r, err := st.Recording(ctx, gw, session)
			if err != nil {
				return nil, archive.ErrUnknownSession
			}
			return hex.DecodeString(r.Hash)
		},
		OnArchived: func(gw, session string, size int64) { _ = st.RecordingArchived(ctx, gw, session, size, clock.Now()) }})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPut, archive.PathPrefix+"gw-1/S-1", bytes.NewReader(rec.Bytes()))
	req.Header.Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", rec.Len()-1, rec.Len()))
	req.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{gw.Chain}}
	w := httptest.NewRecorder()
	arch.ServeHTTP(w, req)
	if w.Code != http.StatusCreated {
		t.Fatalf("upload: %d %s", w.Code, w.Body)
	}
	srv, err := New(Options{Store: st, TrustDomain: "hospital.example", Clock: clock,
		User:       func(*http.Request) (string, error) { return user, nil },
		Recordings: &RecordingsOptions{Archive: arch, Signer: signer, Retention: func(site string) time.Duration { return 30 * 24 * time.Hour }}})
	if err != nil {
		t.Fatal(err)
	}
	return &recFixture{st: st, srv: srv, pki: pki, arch: arch}
}

func postForm(t *testing.T, h http.Handler, path, ctype, body string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	h.ServeHTTP(rec, req)
	return rec
}

func TestRecordings(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		f := newRecFixture(t, dsn, clockwork.NewFakeClockAt(time.Now().Add(time.Minute)))
		h := f.srv.Handler()
		code, body, _ := get(t, h, "/recordings")
		if code != 200 || !strings.Contains(body, `href="/recordings/gw-1/S-1"`) || !strings.Contains(body, "awaiting upload") || !strings.Contains(body, "not reviewed") {
			t.Fatalf("list: %d\n%s", code, body)
		}
		code, body, hdr := get(t, h, "/recordings/gw-1/S-1")
		for _, want := range []string{"chain verified: 6 frames", `data-t="0.100"`, "[+0.500s]", "E-104 occlusion cleared", "&lt;0001&gt;", "## ", "inject: logged in as acme-svc",
			"&lt;script&gt;alert(1)", "Not reviewed yet", "Not held", "30d (site st-a)", "spiffe://hospital.example/gateway/gw-1", "valid (the chain"} {
			if !strings.Contains(body, want) {
				t.Errorf("recording page lacks %q", want)
			}
		}
		if code != 200 || !strings.Contains(hdr.Get("Content-Security-Policy"), "script-src 'nonce-") {
			t.Fatalf("page: %d %v", code, hdr)
		}
		frag := httptest.NewRecorder()
		freq := httptest.NewRequest("GET", "/recordings/gw-1/S-1", nil)
		freq.Header.Set("X-Fragment", "main")
		h.ServeHTTP(frag, freq)
		if frag.Code != http.StatusNotModified {
			t.Fatalf("live refresh of the playback: %d", frag.Code)
		}
		// Review and hold through the forms.
		if r := postForm(t, h, "/recordings/gw-1/S-1/review", "application/x-www-form-urlencoded", "note=ok"); r.Code != http.StatusSeeOther {
			t.Fatalf("review: %d %s", r.Code, r.Body)
		}
		if r := postForm(t, h, "/recordings/gw-1/S-1/hold", "application/x-www-form-urlencoded", "action=set&reason="); r.Code != 400 {
			t.Fatalf("hold without reason: %d", r.Code)
		}
		if r := postForm(t, h, "/recordings/gw-1/S-1/hold", "application/x-www-form-urlencoded", "action=set&reason="+url.QueryEscape("case 42")); r.Code != http.StatusSeeOther {
			t.Fatalf("hold: %d %s", r.Code, r.Body)
		}
		if r := postForm(t, h, "/recordings/gw-1/S-1/hold", "application/x-www-form-urlencoded", "action=maybe"); r.Code != 400 {
			t.Fatalf("bad action: %d", r.Code)
		}
		if r := postForm(t, h, "/recordings/gw-1/nope/review", "application/x-www-form-urlencoded", ""); r.Code != 404 {
			t.Fatalf("review of a missing recording: %d", r.Code)
		}
		_, body, _ = get(t, h, "/recordings/gw-1/S-1")
		if !strings.Contains(body, "Reviewed by "+user) || !strings.Contains(body, "Held</span> since") || !strings.Contains(body, "case 42") ||
			!strings.Contains(body, "legal hold: kept until the hold is cleared") {
			t.Fatalf("after review and hold:\n%s", body)
		}
		// JSON API.
		var list struct{ Recordings []RecordingView }
		getJSON(t, h, "/api/v1/recordings?reviewed=yes&hold=yes&device=pump-07", &list)
		if len(list.Recordings) != 1 || list.Recordings[0].Session != "S-1" || list.Recordings[0].State != "archived" || list.Recordings[0].ReviewedBy != user {
			t.Fatalf("api list %+v", list)
		}
		getJSON(t, h, "/api/v1/recordings?archived=no", &list)
		if len(list.Recordings) != 1 || list.Recordings[0].Session != "S-2" || list.Recordings[0].State != "awaiting_upload" {
			t.Fatalf("awaiting %+v", list)
		}
		for _, bad := range []string{"?reviewed=maybe", "?since=yesterday", "?limit=-1"} {
			if code, _, _ := get(t, h, "/api/v1/recordings"+bad); code != 400 {
				t.Errorf("%s: %d", bad, code)
			}
		}
		var d RecordingDetail
		getJSON(t, h, "/api/v1/recordings/gw-1/S-1?transcript=1", &d)
		if !d.Verification.OK || len(d.Transcript) != 4 || d.SessionEnd.Seq != 7 || len(d.Audit) != 3 || !d.Hold {
			t.Fatalf("detail %+v", d)
		}
		if code, _, _ := get(t, h, "/api/v1/recordings/gw-1/nope"); code != 404 {
			t.Fatalf("missing: %d", code)
		}
		if r := postForm(t, h, "/api/v1/recordings/gw-1/S-1/hold", "application/json", `{"hold":false,"reason":"case closed"}`); r.Code != 200 {
			t.Fatalf("api hold clear: %d %s", r.Code, r.Body)
		}
		if r := postForm(t, h, "/api/v1/recordings/gw-1/S-1/review", "application/json", `{"nope":1}`); r.Code != 400 {
			t.Fatalf("unknown field: %d", r.Code)
		}
		// The bundle verifies; the awaiting one has none.
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/recordings/gw-1/S-1/bundle", nil))
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/x-tar" {
			t.Fatalf("bundle: %d", rec.Code)
		}
		rep, err := recbundle.Verify(bytes.NewReader(rec.Body.Bytes()), f.pki.Roots(), nil)
		if err != nil || rep.Manifest.Exporter != user || rep.Recording.Frames != 6 {
			t.Fatalf("bundle %+v %v", rep, err)
		}
		if code, _, _ := get(t, h, "/api/v1/recordings/gw-1/S-2/bundle"); code != 404 {
			t.Fatalf("bundle of an awaiting recording: %d", code)
		}
		if code, _, _ := get(t, h, "/api/v1/recordings/gw-1/S-1/receipt"); code != 200 {
			t.Fatalf("receipt: %d", code)
		}
		// An archived file altered on disk shows as broken, and is not exported.
		p := f.arch.Path("gw-1", "S-1")
		data, _ := os.ReadFile(p)
		data[len(data)/2] ^= 1
		_ = os.WriteFile(p, data, 0o600)
		_, body, _ = get(t, h, "/recordings/gw-1/S-1")
		if !strings.Contains(body, `class="bad">chain broken`) {
			t.Fatalf("altered file not shown broken")
		}
		if code, _, _ := get(t, h, "/api/v1/recordings/gw-1/S-1/bundle"); code != http.StatusConflict {
			t.Fatalf("bundle of an altered file: %d", code)
		}
		var trail RecordingDetail
		getJSON(t, h, "/api/v1/recordings/gw-1/S-1", &trail)
		if n := len(trail.Audit); n != 5 || trail.Audit[n-1].Action != store.RecordingExportedAction {
			t.Fatalf("audit %+v", trail.Audit)
		}
	})
}
