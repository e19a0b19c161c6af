package web

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/central/archive"
	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/recbundle"
	"github.com/wardgate/wardgate/wire/recchain"
)

// RecordingsOptions mount the recordings archive (Options.Recordings).
type RecordingsOptions struct {
	// Archive holds the uploaded files (required).
	Archive *archive.Archive
	// Signer returns central's key and chain, to sign export bundles
	// (required).
	Signer func() (crypto.Signer, []*x509.Certificate)
	// Retention returns how long recordings of a site are kept (nil: for
	// good).
	Retention func(site string) time.Duration
}

// Bounds of the playback page: a longer recording is shown in part (the
// export bundle has all of it).
const (
	playbackMaxFrames = 20000
	playbackMaxBytes  = 4 << 20
)

func init() {
	for _, name := range []string{"recordings", "recording"} {
		pages[name] = template.Must(template.New("layout").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
}

func (s *Server) recordingRoutes() {
	m := s.mux
	m.HandleFunc("GET /recordings", s.pageRecordings)
	m.HandleFunc("GET /recordings/{gw}/{session}", s.pageRecording)
	m.HandleFunc("POST /recordings/{gw}/{session}/review", s.formReview)
	m.HandleFunc("POST /recordings/{gw}/{session}/hold", s.formHold)
	m.HandleFunc("GET /api/v1/recordings", s.apiRecordings)
	m.HandleFunc("GET /api/v1/recordings/{gw}/{session}", s.apiRecording)
	m.HandleFunc("GET /api/v1/recordings/{gw}/{session}/bundle", s.apiBundle)
	m.HandleFunc("GET /api/v1/recordings/{gw}/{session}/receipt", s.apiReceipt)
	m.HandleFunc("POST /api/v1/recordings/{gw}/{session}/review", s.apiReview)
	m.HandleFunc("POST /api/v1/recordings/{gw}/{session}/hold", s.apiHold)
	m.HandleFunc("PUT /api/v1/recordings/{gw}/{session}", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusForbidden, "operators cannot upload recordings: gateways upload their own, with their gateway certificate")
	})
}

// gatewayPeer reports whether r's client certificate is a gateway's (the
// listener verified the chain).
func (s *Server) gatewayPeer(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	id, err := certs.IdentityFromCert(r.TLS.PeerCertificates[0], s.o.TrustDomain)
	return err == nil && id.Kind == certs.KindGateway
}

// serveGateway answers a request made with a gateway certificate: the
// upload protocol only, nothing else.
func (s *Server) serveGateway(w http.ResponseWriter, r *http.Request) {
	if s.o.Recordings == nil || !archive.IsUploadPath(r) {
		http.Error(w, "forbidden: a gateway certificate may only upload recordings (PUT/HEAD /api/v1/recordings/GATEWAY/SESSION)", http.StatusForbidden)
		return
	}
	s.count("upload")
	s.o.Recordings.Archive.ServeHTTP(w, r)
}

func recordingQuery(r *http.Request) (store.RecordingQuery, error) {
	v := r.URL.Query()
	q := store.RecordingQuery{Gateway: v.Get("gateway"), Device: v.Get("device"), Vendor: v.Get("vendor"),
		Reviewed: v.Get("reviewed"), Hold: v.Get("hold"), Archived: v.Get("archived")}
	for k, val := range map[string]string{"reviewed": q.Reviewed, "hold": q.Hold, "archived": q.Archived} {
		if val != "" && val != "yes" && val != "no" {
			return q, fmt.Errorf("%s=%q: use yes or no", k, val)
		}
	}
	parse := func(k string) (time.Time, error) {
		s := v.Get(k)
		if s == "" {
			return time.Time{}, nil
		}
		for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
			if t, err := time.Parse(layout, s); err == nil {
				return t, nil
			}
		}
		return time.Time{}, fmt.Errorf("%s=%q: write a date (2026-11-28) or an RFC 3339 time", k, s)
	}
	var err error
	if q.Since, err = parse("since"); err != nil {
		return q, err
	}
	if q.Until, err = parse("until"); err != nil {
		return q, err
	}
	if l := v.Get("limit"); l != "" {
		if q.Limit, err = strconv.Atoi(l); err != nil || q.Limit < 1 {
			return q, fmt.Errorf("limit=%q: use a positive number (at most 1000)", l)
		}
	}
	return q, nil
}

// RecordingView is a recording with what the archive and the retention
// say about it (the JSON of /api/v1/recordings).
type RecordingView struct {
	store.Recording
	// State: awaiting_upload, archived, refused or pruned.
	State string `json:"state"`
	// KeepUntil is when retention deletes the file (zero: kept for good,
	// or under legal hold).
	KeepUntil time.Time `json:"keep_until,omitzero"`
	Retention string    `json:"retention"`
}

func (s *Server) view(r store.Recording) RecordingView {
	v := RecordingView{Recording: r, State: "awaiting_upload", Retention: "kept for good"}
	switch {
	case !r.Pruned.IsZero():
		v.State = "pruned"
	case !r.Archived.IsZero():
		v.State = "archived"
	case r.Refused != "":
		v.State = "refused"
	}
	if ro := s.o.Recordings; ro != nil && ro.Retention != nil {
		if keep := ro.Retention(r.Site); keep > 0 {
			v.Retention = fmt.Sprintf("%dd (site %s)", keep/(24*time.Hour), orDash(r.Site))
			if !r.Archived.IsZero() {
				v.KeepUntil = r.Archived.Add(keep)
			}
		}
	}
	if r.Hold {
		v.Retention = "legal hold: kept until the hold is cleared"
		v.KeepUntil = time.Time{}
	}
	return v
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// listRecordings returns the recordings r asks for; a bad query is a
// badQuery error.
func (s *Server) listRecordings(r *http.Request) ([]RecordingView, store.RecordingQuery, error) {
	q, err := recordingQuery(r)
	if err != nil {
		return nil, q, badQuery{err}
	}
	rs, err := s.o.Store.Recordings(r.Context(), q)
	if err != nil {
		return nil, q, err
	}
	out := make([]RecordingView, 0, len(rs))
	for _, rec := range rs {
		out = append(out, s.view(rec))
	}
	return out, q, nil
}

func (s *Server) apiRecordings(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	vs, _, err := s.listRecordings(r)
	var bad badQuery
	if errors.As(err, &bad) {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"recordings": vs})
}

// badQuery is an operator's mistake (answered 400 with its message).
type badQuery struct{ error }

func (s *Server) pageRecordings(w http.ResponseWriter, r *http.Request) {
	vs, q, err := s.listRecordings(r)
	var bad badQuery
	if errors.As(err, &bad) {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err != nil {
		s.pageError(w, err)
		return
	}
	form := r.URL.Query()
	s.render(w, r, "recordings", "Recordings", map[string]any{"Recordings": vs, "Q": q, "Form": form,
		"Since": form.Get("since"), "Until": form.Get("until"), "Archive": s.o.Recordings != nil})
}

// Line is one transcript line of the playback.
type Line struct {
	Offset float64 `json:"offset"` // seconds from the start
	Dir    string  `json:"dir"`    // ">>" vendor to device, "<<" device to vendor, "##" note
	Text   string  `json:"text"`
	Bytes  int     `json:"bytes"`
}

// Verification is the check of the archived file against the signed
// session-end event.
type Verification struct {
	OK        bool      `json:"ok"`
	Message   string    `json:"message"`
	Frames    int       `json:"frames,omitempty"`
	FinalHash string    `json:"final_hash,omitempty"`
	Header    any       `json:"header,omitempty"`
	Trailer   any       `json:"trailer,omitempty"`
	Truncated bool      `json:"truncated,omitempty"` // the playback shows only the start
	Checked   time.Time `json:"checked"`
}

// SignedEvent describes the signed session-end event.
type SignedEvent struct {
	Signer    string            `json:"signer"`
	Signature string            `json:"signature"` // "valid" or why not
	Time      time.Time         `json:"time"`
	Seq       uint64            `json:"seq"`
	Attrs     map[string]string `json:"attrs"`
	Bytes     int               `json:"bytes"`
	COSEHex   string            `json:"-"`
}

func decodeEvent(b []byte) SignedEvent {
	ev := SignedEvent{Signature: "not stored", Bytes: len(b), COSEHex: hex.EncodeToString(b)}
	if len(b) == 0 {
		return ev
	}
	sg, err := envelope.Parse(b)
	if err != nil {
		ev.Signature = "undecodable: " + err.Error()
		return ev
	}
	if len(sg.Chain) > 0 && len(sg.Chain[0].URIs) > 0 {
		ev.Signer = sg.Chain[0].URIs[0].String()
	}
	if err := sg.VerifySignature(); err != nil {
		ev.Signature = "INVALID: " + err.Error()
	} else {
		ev.Signature = "valid (the chain was verified when central received it)"
	}
	if env, err := envelope.DecodePayload(sg.Payload); err == nil {
		ev.Time, ev.Seq = time.UnixMilli(env.Time).UTC(), env.Seq
		var e wire.Event
		if envelope.Unmarshal(env.Body, &e) == nil {
			ev.Attrs = e.Attrs
		}
	}
	return ev
}

// transcript verifies the archived file of rec against the signed hash
// and returns the playback lines (bounded).
func (s *Server) transcript(rec store.Recording) (Verification, []Line) {
	v := Verification{Checked: s.clock.Now().UTC()}
	if s.o.Recordings == nil {
		v.Message = "the archive is not configured on this central (archive: in its configuration)"
		return v, nil
	}
	path := s.o.Recordings.Archive.Path(rec.Gateway, rec.Session)
	if path == "" {
		v.Message = "not archived: the gateway has not uploaded it yet, or retention deleted it"
		if rec.Refused != "" {
			v.Message = "the last upload was refused: " + rec.Refused
		}
		return v, nil
	}
	f, err := os.Open(path)
	if err != nil {
		v.Message = "cannot read the archived file; see central's log"
		s.log.Error("recording unreadable", "path", path, "err", err)
		return v, nil
	}
	defer f.Close()
	var lines []Line
	var start time.Time
	var shown int
	sum, err := recchain.Verify(f, func(fr recchain.Frame) {
		switch {
		case fr.Header != nil:
			start = fr.Header.Start
			v.Header = fr.Header
			return
		case fr.Trailer != nil:
			v.Trailer = fr.Trailer
			return
		}
		if len(lines) >= playbackMaxFrames || shown >= playbackMaxBytes {
			v.Truncated = true
			return
		}
		l := Line{Offset: fr.Time.Sub(start).Seconds()}
		switch {
		case fr.Note != nil:
			l.Dir, l.Text = "##", fr.Note.Kind+": "+fr.Note.Text
		default:
			l.Dir = ">>"
			if fr.Dir == recchain.FromDevice {
				l.Dir = "<<"
			}
			l.Text, l.Bytes = printable(fr.Data), len(fr.Data)
		}
		shown += len(l.Text)
		lines = append(lines, l)
	})
	if err != nil {
		v.Message = "chain broken: " + err.Error()
		return v, lines
	}
	v.Frames, v.FinalHash = sum.Frames, hex.EncodeToString(sum.FinalHash)
	if err := recchain.CheckHash(sum, rec.Hash); err != nil {
		v.Message = err.Error()
		return v, lines
	}
	v.OK = true
	v.Message = fmt.Sprintf("chain verified: %d frames, final hash equals the signed session-end event's", sum.Frames)
	return v, lines
}

// printable renders bytes as text: printable ASCII, tab, CR and LF as
// they are, other bytes as <hex>.
func printable(p []byte) string {
	var b strings.Builder
	for i := 0; i < len(p); {
		c := p[i]
		if c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f) {
			b.WriteByte(c)
			i++
			continue
		}
		if c == '\r' {
			i++
			continue
		}
		j := i
		for j < len(p) && (p[j] < 0x20 || p[j] >= 0x7f) && p[j] != '\n' && p[j] != '\t' && p[j] != '\r' {
			j++
		}
		b.WriteString("<" + hex.EncodeToString(p[i:j]) + ">")
		i = j
	}
	return b.String()
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request, api bool) (store.Recording, bool) {
	gw, session := r.PathValue("gw"), r.PathValue("session")
	rec, err := s.o.Store.Recording(r.Context(), gw, session)
	if errors.Is(err, store.ErrNotFound) {
		msg := fmt.Sprintf("no recording %s/%s: central has no session-end event for it", gw, session)
		if api {
			apiError(w, http.StatusNotFound, msg)
		} else {
			http.Error(w, msg, http.StatusNotFound)
		}
		return rec, false
	}
	if err != nil {
		if api {
			s.internal(w, err)
		} else {
			s.pageError(w, err)
		}
		return rec, false
	}
	return rec, true
}

// RecordingDetail is the JSON of /api/v1/recordings/{gw}/{session}.
type RecordingDetail struct {
	RecordingView
	Verification Verification           `json:"verification"`
	SessionEnd   SignedEvent            `json:"session_end"`
	Audit        []store.RecordingAudit `json:"audit"`
	Transcript   []Line                 `json:"transcript,omitempty"`
}

func (s *Server) detail(r *http.Request, rec store.Recording) (RecordingDetail, error) {
	d := RecordingDetail{RecordingView: s.view(rec), SessionEnd: decodeEvent(rec.EventCOSE)}
	d.Verification, d.Transcript = s.transcript(rec)
	var err error
	d.Audit, err = s.o.Store.RecordingAuditTrail(r.Context(), rec.Gateway, rec.Session)
	return d, err
}

func (s *Server) apiRecording(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	rec, ok := s.lookup(w, r, true)
	if !ok {
		return
	}
	d, err := s.detail(r, rec)
	if err != nil {
		s.internal(w, err)
		return
	}
	if r.URL.Query().Get("transcript") != "1" {
		d.Transcript = nil
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) pageRecording(w http.ResponseWriter, r *http.Request) {
	// The live refresh of other pages would restart a playback: this
	// page changes only through its own forms, which reload it.
	if r.Header.Get("X-Fragment") == "main" {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	rec, ok := s.lookup(w, r, false)
	if !ok {
		return
	}
	d, err := s.detail(r, rec)
	if err != nil {
		s.pageError(w, err)
		return
	}
	var dur float64
	if n := len(d.Transcript); n > 0 {
		dur = d.Transcript[n-1].Offset
	}
	s.render(w, r, "recording", "Recording "+rec.Session, map[string]any{"D": d, "Duration": dur,
		"Path": "/recordings/" + url.PathEscape(rec.Gateway) + "/" + url.PathEscape(rec.Session),
		"API":  "/api/v1/recordings/" + url.PathEscape(rec.Gateway) + "/" + url.PathEscape(rec.Session)})
}

// ReviewRequest is the body of POST .../review.
type ReviewRequest struct {
	Note string `json:"note"`
}

// HoldRequest is the body of POST .../hold.
type HoldRequest struct {
	Hold   bool   `json:"hold"`
	Reason string `json:"reason"`
}

func (s *Server) review(r *http.Request, gw, session, note string) error {
	if len(note) > 500 {
		return badQuery{errors.New("the note is longer than 500 characters")}
	}
	who := userOf(r)
	if err := s.o.Store.ReviewRecording(r.Context(), gw, session, who, note, s.clock.Now()); err != nil {
		return err
	}
	s.log.Info("recording reviewed", "gateway", gw, "session", session, "by", who)
	return nil
}

func (s *Server) hold(r *http.Request, gw, session string, h HoldRequest) error {
	if h.Hold && strings.TrimSpace(h.Reason) == "" {
		return badQuery{errors.New("a legal hold needs a reason (the case or request it serves)")}
	}
	if len(h.Reason) > 500 {
		return badQuery{errors.New("the reason is longer than 500 characters")}
	}
	who := userOf(r)
	if err := s.o.Store.SetRecordingHold(r.Context(), gw, session, h.Hold, who, strings.TrimSpace(h.Reason), s.clock.Now()); err != nil {
		return err
	}
	s.log.Info("recording legal hold changed", "gateway", gw, "session", session, "hold", h.Hold, "by", who)
	return nil
}

func (s *Server) changeAnswer(w http.ResponseWriter, r *http.Request, err error, api bool) bool {
	var bad badQuery
	switch {
	case err == nil:
		return true
	case errors.As(err, &bad):
		if api {
			apiError(w, http.StatusBadRequest, err.Error())
		} else {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	case errors.Is(err, store.ErrNotFound):
		msg := fmt.Sprintf("no recording %s/%s", r.PathValue("gw"), r.PathValue("session"))
		if api {
			apiError(w, http.StatusNotFound, msg)
		} else {
			http.Error(w, msg, http.StatusNotFound)
		}
	default:
		if api {
			s.internal(w, err)
		} else {
			s.pageError(w, err)
		}
	}
	return false
}

func (s *Server) formReview(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	gw, session := r.PathValue("gw"), r.PathValue("session")
	if s.changeAnswer(w, r, s.review(r, gw, session, r.PostForm.Get("note")), false) {
		http.Redirect(w, r, "/recordings/"+url.PathEscape(gw)+"/"+url.PathEscape(session)+"#review", http.StatusSeeOther)
	}
}

func (s *Server) formHold(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	gw, session := r.PathValue("gw"), r.PathValue("session")
	var h HoldRequest
	switch r.PostForm.Get("action") {
	case "set":
		h.Hold = true
	case "clear":
	default:
		http.Error(w, "action must be set or clear", http.StatusBadRequest)
		return
	}
	h.Reason = r.PostForm.Get("reason")
	if s.changeAnswer(w, r, s.hold(r, gw, session, h), false) {
		http.Redirect(w, r, "/recordings/"+url.PathEscape(gw)+"/"+url.PathEscape(session)+"#hold", http.StatusSeeOther)
	}
}

func (s *Server) apiReview(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	var req ReviewRequest
	if err := decodeBody(w, r, &req); err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.changeAnswer(w, r, s.review(r, r.PathValue("gw"), r.PathValue("session"), req.Note), true) {
		s.apiRecording(w, r)
	}
}

func (s *Server) apiHold(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	var req HoldRequest
	if err := decodeBody(w, r, &req); err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.changeAnswer(w, r, s.hold(r, r.PathValue("gw"), r.PathValue("session"), req), true) {
		s.apiRecording(w, r)
	}
}

func (s *Server) apiReceipt(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	if s.o.Recordings == nil {
		apiError(w, http.StatusNotFound, "the archive is not configured on this central")
		return
	}
	p := s.o.Recordings.Archive.ReceiptPath(r.PathValue("gw"), r.PathValue("session"))
	b, err := os.ReadFile(p)
	if p == "" || err != nil {
		apiError(w, http.StatusNotFound, "no receipt: the recording is not archived")
		return
	}
	w.Header().Set("Content-Type", "application/cose")
	_, _ = w.Write(b)
}

// apiBundle streams the signed export bundle (wire/recbundle).
func (s *Server) apiBundle(w http.ResponseWriter, r *http.Request) {
	s.count("api")
	rec, ok := s.lookup(w, r, true)
	if !ok {
		return
	}
	ro := s.o.Recordings
	if ro == nil {
		apiError(w, http.StatusNotFound, "the archive is not configured on this central")
		return
	}
	path, rpath := ro.Archive.Path(rec.Gateway, rec.Session), ro.Archive.ReceiptPath(rec.Gateway, rec.Session)
	if path == "" || rpath == "" {
		apiError(w, http.StatusNotFound, "the recording is not archived (not uploaded yet, or deleted by retention)")
		return
	}
	rb, err := os.ReadFile(rpath)
	if err != nil {
		s.internal(w, err)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		s.internal(w, err)
		return
	}
	defer f.Close()
	// One pass verifies the chain and hashes the file; the second streams it.
	h := sha256.New()
	sum, err := recchain.Verify(io.TeeReader(f, h), nil)
	if err == nil {
		err = recchain.CheckHash(sum, rec.Hash)
	}
	if err != nil {
		apiError(w, http.StatusConflict, "the archived file does not verify against its signed session-end event: "+err.Error())
		return
	}
	st, err := f.Stat()
	if err != nil {
		s.internal(w, err)
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		s.internal(w, err)
		return
	}
	key, chain := ro.Signer()
	who, now := userOf(r), s.clock.Now()
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.tar"`, rec.Gateway, rec.Session))
	if err := recbundle.Write(w, key, chain, recbundle.Contents{Gateway: rec.Gateway, Session: rec.Session, Exporter: who, Created: now,
		SessionEnd: rec.EventCOSE, Receipt: rb, Recording: f, Size: st.Size(), Head: sum.FinalHash, Frames: sum.Frames}, h.Sum(nil)); err != nil {
		s.log.Error("bundle export failed", "gateway", rec.Gateway, "session", rec.Session, "err", err)
		return
	}
	if err := s.o.Store.RecordingExported(r.Context(), rec.Gateway, rec.Session, who, now); err != nil {
		s.log.Error("bundle export not audited", "err", err)
	}
	s.log.Info("recording exported", "gateway", rec.Gateway, "session", rec.Session, "by", who)
}

// decodeBody decodes a small JSON request body strictly.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body is not the expected JSON object (see docs/central.md): %w", err)
	}
	return nil
}
