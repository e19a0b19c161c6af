package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EndReason says why a session or a grant ended. It is recorded where the
// end happens (expiry timer, revoke, lock, tamper, button, retirement,
// injection) and shown to the vendor by the status API.
type EndReason string

// End reasons.
const (
	EndClosed          EndReason = "closed"            // the vendor or the device closed the connection
	EndExpired         EndReason = "expired"           // the grant's time ran out
	EndRevoked         EndReason = "revoked"           // the device owner revoked the grant
	EndDenied          EndReason = "denied"            // the request was denied
	EndLocked          EndReason = "locked"            // the vendor's identity (or org) was locked
	EndTamper          EndReason = "tamper"            // the gateway's enclosure was opened
	EndButton          EndReason = "button"            // a short press of the gateway's button
	EndByOwner         EndReason = "ended_by_owner"    // the owner ended this one session (the grant stays)
	EndRetired         EndReason = "device_retired"    // the device was retired
	EndShutdown        EndReason = "gateway_stopped"   // the gateway stopped
	EndInjectFailed    EndReason = "injection_failed"  // the gateway could not log in to the device's service account
	EndRecordingFailed EndReason = "recording_failed"  // the session could not be recorded
	EndConsoleLost     EndReason = "console_lost"      // the serial console failed
	EndWriteFailed     EndReason = "connection_failed" // a write to either side failed
)

// Explain is one sentence for the vendor about why the session ended.
func (r EndReason) Explain() string {
	switch r {
	case EndClosed:
		return "the connection was closed (by you or by the device)"
	case EndExpired:
		return "your grant expired; ask the device owner for a new one, or next time ask for more time with --extend before it ends"
	case EndRevoked:
		return "the device owner revoked your grant; talk to them before asking again"
	case EndDenied:
		return "the device owner denied the request"
	case EndLocked:
		return "your identity (or your organisation) was locked by the hospital"
	case EndTamper:
		return "the gateway's enclosure was opened (tamper); vendor access is off until the owner clears it"
	case EndButton:
		return "someone at the gateway pressed its button to end vendor sessions"
	case EndByOwner:
		return "the device owner ended this session; your grant is still active"
	case EndRetired:
		return "the device was retired from service"
	case EndShutdown:
		return "the gateway stopped"
	case EndInjectFailed:
		return "the gateway could not log in to the device's service account; tell the device owner"
	case EndRecordingFailed:
		return "the gateway could not record the session, and never allows unrecorded access"
	case EndConsoleLost:
		return "the device's serial console failed"
	case EndWriteFailed:
		return "the connection to the device or to you failed"
	}
	return string(r)
}

// classifyEnd maps the free-text reason of a cut to its EndReason, for the
// callers that pass text only.
func classifyEnd(reason string) EndReason {
	r := strings.ToLower(reason)
	switch {
	case strings.Contains(r, "expired"):
		return EndExpired
	case strings.Contains(r, "locked"):
		return EndLocked
	case strings.Contains(r, "tamper"):
		return EndTamper
	case strings.Contains(r, "button"):
		return EndButton
	case strings.Contains(r, "retired"):
		return EndRetired
	case strings.Contains(r, "shutting down"), strings.Contains(r, "stopped"):
		return EndShutdown
	case strings.HasPrefix(r, "revoked"):
		return EndRevoked
	case strings.HasPrefix(r, "denied"):
		return EndDenied
	case strings.HasPrefix(r, "ended by"):
		return EndByOwner
	case strings.Contains(r, "recording"):
		return EndRecordingFailed
	case strings.Contains(r, "injection"):
		return EndInjectFailed
	case strings.Contains(r, "write failed"):
		return EndWriteFailed
	}
	return EndClosed
}

// grantEnd is the EndReason of a grant closed to state to with reason.
func grantEnd(to State, reason string) EndReason {
	switch {
	case to == StateDenied:
		return EndDenied
	case to == StateExpired:
		return EndExpired
	case reason != "":
		if r := classifyEnd(reason); r != EndClosed {
			return r
		}
	}
	return EndRevoked
}

// ConsolePort stands for a device's serial service console in a target
// (DEVICE:console), in grants and in events.
const ConsolePort = -1

// ConsoleName is how targets, grants and events write ConsolePort.
const ConsoleName = "console"

// PortName writes a port as targets do: the number, or "console".
func PortName(p int) string {
	if p == ConsolePort {
		return ConsoleName
	}
	return strconv.Itoa(p)
}

// maxEnded bounds the ended sessions the broker remembers for the status API.
const maxEnded = 200

// endedLog remembers recently ended sessions (with their end reason) for
// the vendors' status API. It has its own lock: sessions are cut from
// goroutines that may or may not hold the broker's.
type endedLog struct {
	mu   sync.Mutex
	list []SessionInfo // oldest first
}

func (l *endedLog) add(i SessionInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.list {
		if l.list[k].ID == i.ID {
			// The cut recorded the reason; the end fills in the counts.
			if i.EndReason == "" {
				i.EndReason, i.EndDetail = l.list[k].EndReason, l.list[k].EndDetail
			}
			l.list[k] = i
			return
		}
	}
	l.list = append(l.list, i)
	if len(l.list) > maxEnded {
		l.list = slices.Delete(l.list, 0, len(l.list)-maxEnded)
	}
}

func (l *endedLog) of(vendor string) []SessionInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []SessionInfo
	for i := len(l.list) - 1; i >= 0; i-- {
		if l.list[i].Vendor == vendor {
			out = append(out, l.list[i])
		}
	}
	return out
}

// VendorGrant is a request or grant as its vendor sees it.
type VendorGrant struct {
	ID        string        `json:"id"`
	Device    string        `json:"device"`
	Ports     []string      `json:"ports"`
	State     State         `json:"state"`
	Reason    string        `json:"reason,omitempty"`
	Requested time.Time     `json:"requested"`
	Expires   time.Time     `json:"expires"` // pending: request expiry; active: grant expiry
	Waiting   []string      `json:"waiting,omitempty"`
	Approvers []string      `json:"approvers,omitempty"`
	Approved  time.Time     `json:"approved,omitzero"`
	Closed    time.Time     `json:"closed,omitzero"`
	ClosedBy  string        `json:"closed_by,omitempty"`
	End       EndReason     `json:"end,omitempty"`
	Extends   string        `json:"extends,omitempty"`
	Extend    time.Duration `json:"extend,omitempty"`
}

// VendorStatus is what GET /v1/me answers: the caller's own requests,
// grants and sessions.
type VendorStatus struct {
	Time     time.Time     `json:"time"`
	Vendor   string        `json:"vendor"`
	Requests []VendorGrant `json:"requests"` // pending (extension requests included)
	Grants   []VendorGrant `json:"grants"`   // active
	Recent   []VendorGrant `json:"recent"`   // closed, newest first (bounded)
	Sessions []SessionInfo `json:"sessions"` // live
	Ended    []SessionInfo `json:"ended"`    // ended, newest first (bounded)
}

// Find returns the request or grant with id.
func (s *VendorStatus) Find(id string) (VendorGrant, bool) {
	for _, l := range [][]VendorGrant{s.Grants, s.Requests, s.Recent} {
		for _, g := range l {
			if g.ID == id {
				return g, true
			}
		}
	}
	return VendorGrant{}, false
}

// Session returns the live or ended session with id.
func (s *VendorStatus) Session(id string) (SessionInfo, bool) {
	for _, l := range [][]SessionInfo{s.Sessions, s.Ended} {
		for _, x := range l {
			if x.ID == id {
				return x, true
			}
		}
	}
	return SessionInfo{}, false
}

func vendorView(g *Grant) VendorGrant {
	v := VendorGrant{ID: g.ID, Device: g.Device, State: g.State, Reason: g.Reason, Requested: g.Requested,
		Expires: g.Deadline, Approved: g.Approved, Closed: g.Closed, End: g.End, Extends: g.Extends, Extend: g.Extend}
	for _, p := range g.Ports {
		v.Ports = append(v.Ports, PortName(p))
	}
	for _, a := range g.Approvals {
		v.Approvers = append(v.Approvers, a.Actor.String())
	}
	if g.State == StatePending {
		v.Waiting = g.missing()
	}
	if g.ClosedBy != nil {
		v.ClosedBy = g.ClosedBy.String()
	}
	return v
}

// Status returns vendor's own requests, grants and sessions.
func (b *Broker) Status(vendor string) VendorStatus {
	b.mu.Lock()
	now := b.clock.Now()
	st := VendorStatus{Time: now, Vendor: vendor, Requests: []VendorGrant{}, Grants: []VendorGrant{}, Recent: []VendorGrant{},
		Sessions: []SessionInfo{}}
	for _, g := range b.grants {
		if g.Vendor != vendor {
			continue
		}
		switch g.State {
		case StatePending:
			st.Requests = append(st.Requests, vendorView(g))
		case StateActive:
			st.Grants = append(st.Grants, vendorView(g))
		default:
			st.Recent = append(st.Recent, vendorView(g))
		}
	}
	for _, s := range b.sessions {
		if s.info.Vendor == vendor {
			i := s.snapshot()
			i.Remote, i.Recording = "", "" // gateway-side details
			st.Sessions = append(st.Sessions, i)
		}
	}
	b.mu.Unlock()
	for _, i := range b.ended.of(vendor) {
		i.Remote, i.Recording = "", ""
		st.Ended = append(st.Ended, i)
	}
	if st.Ended == nil {
		st.Ended = []SessionInfo{}
	}
	if len(st.Ended) > 50 {
		st.Ended = st.Ended[:50]
	}
	byReq := func(x []VendorGrant) {
		sort.Slice(x, func(i, j int) bool { return x[i].Requested.Before(x[j].Requested) })
	}
	byReq(st.Requests)
	byReq(st.Grants)
	sort.Slice(st.Recent, func(i, j int) bool { return st.Recent[i].Closed.After(st.Recent[j].Closed) })
	if len(st.Recent) > 50 {
		st.Recent = st.Recent[:50]
	}
	sort.Slice(st.Sessions, func(i, j int) bool { return st.Sessions[i].Start.Before(st.Sessions[j].Start) })
	return st
}

// ErrExtension: an extension request that cannot be made (not the caller's
// grant, not active, a bad duration).
var ErrExtension = errors.New("extension refused")

// RequestExtension records vendor v's request for d more on its active
// grant id. The request is approved like a grant (the grant's approval
// policy) and then moves the grant's expiry by d, never beyond max_session
// from the approval of the extension. A pending extension of the same grant
// is returned as it is.
func (b *Broker) RequestExtension(v VendorIdentity, id string, d time.Duration, reason string) (Grant, error) {
	id = normID(id)
	b.mu.Lock()
	g, ok := b.grants[id]
	if !ok || g.Vendor != v.URI {
		b.mu.Unlock()
		return Grant{}, fmt.Errorf("%w: you have no grant %s", ErrExtension, id)
	}
	now := b.clock.Now()
	if g.State != StateActive || !now.Before(g.Deadline) {
		b.mu.Unlock()
		return Grant{}, fmt.Errorf("%w: grant %s is %s; only an active grant can be extended (ask for a new one by connecting again)", ErrExtension, id, g.State)
	}
	dev, known := b.devices[g.Device]
	maxS := time.Hour
	if known {
		maxS = dev.MaxSession
	}
	if d <= 0 || d > maxS {
		b.mu.Unlock()
		return Grant{}, fmt.Errorf("%w: ask for between 1s and %s (the device's max_session)", ErrExtension, maxS)
	}
	for _, x := range b.grants {
		if x.Extends == id && x.State == StatePending {
			out := cloneGrant(x)
			b.mu.Unlock()
			return out, nil
		}
	}
	ttl := b.o.RequestTTL
	if known && dev.RequestTTL > 0 {
		ttl = dev.RequestTTL
	}
	x := &Grant{
		ID: b.newIDLocked(), Vendor: g.Vendor, Org: g.Org, Person: g.Person, Device: g.Device,
		Ports: slices.Clone(g.Ports), Reason: reason, Policy: slices.Clone(g.Policy), State: StatePending,
		Requested: now, Deadline: now.Add(ttl), Extends: id, Extend: d,
	}
	b.grants[x.ID] = x
	b.persistGrantLocked(x)
	evs := []Event{{Time: now, Kind: EvExtendRequest, Grant: x.ID, Extends: id, Extend: d, Vendor: g.Vendor, Device: g.Device,
		Ports: x.Ports, Reason: reason, Waiting: x.missing(), Until: x.Deadline}}
	evs = append(evs, b.scheduleLocked(x, now)...)
	out := cloneGrant(x)
	b.mu.Unlock()
	b.log.Info("vendor asked for more time", "request", out.ID, "grant", id, "extend", d)
	b.emit(evs)
	b.updateLED()
	return out, nil
}

// applyExtensionLocked is called when request g became fully approved: if
// g is an extension request, it moves its grant's expiry and ends g as
// applied (or as expired when the grant ended meanwhile).
func (b *Broker) applyExtensionLocked(g *Grant, now time.Time) []Event {
	if g.Extends == "" || g.State != StateActive {
		return nil
	}
	g.Closed = now
	p, ok := b.grants[g.Extends]
	if !ok || p.State != StateActive || !now.Before(p.Deadline) {
		g.State, g.End = StateExpired, EndExpired
		b.persistGrantLocked(g)
		return nil
	}
	maxS := time.Hour
	if d, ok := b.devices[p.Device]; ok {
		maxS = d.MaxSession
	}
	dl := p.Deadline.Add(g.Extend)
	if limit := now.Add(maxS); dl.After(limit) {
		dl = limit
	}
	if dl.After(p.Deadline) {
		p.Deadline = dl
		b.persistGrantLocked(p)
	}
	g.State, g.Deadline = StateApplied, p.Deadline
	b.persistGrantLocked(g)
	evs := []Event{{Time: now, Kind: EvExtended, Grant: p.ID, Extends: g.ID, Extend: g.Extend, Vendor: p.Vendor, Device: p.Device, Until: p.Deadline}}
	return append(evs, b.scheduleLocked(p, now)...)
}

// requestTTL is dev's request lifetime.
func (b *Broker) requestTTL(dev Device) time.Duration {
	if dev.RequestTTL > 0 {
		return dev.RequestTTL
	}
	return b.o.RequestTTL
}

// apiAnswer writes a JSON answer of the status API.
func apiAnswer(w io.Writer, status int, v any) {
	body, _ := json.Marshal(v)
	body = append(body, '\n')
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", status, statusText(status), len(body))
	_, _ = w.Write(body)
}

func statusText(s int) string {
	switch s {
	case 200:
		return "OK"
	case 202:
		return "Accepted"
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 409:
		return "Conflict"
	}
	return "Error"
}

// APIError is the body of a refused status API call.
type APIError struct {
	Code    string `json:"code"`
	Reason  string `json:"reason"`
	Request string `json:"request,omitempty"`
}

// RequestAnswer is the body of POST /v1/request: the request or grant that
// now covers the target.
type RequestAnswer struct {
	Grant  VendorGrant `json:"grant"`
	Code   string      `json:"code,omitempty"` // the refusal code a CONNECT would get now (empty: active)
	Reason string      `json:"reason,omitempty"`
}

// serveAPI answers a status API request of vendor vid (already verified).
// Paths: GET /v1/me; POST /v1/request?target=DEVICE:PORT&reason=R;
// POST /v1/extend?grant=ID&for=DURATION&reason=R.
func (b *Broker) serveAPI(w io.Writer, vid VendorIdentity, req *ConnectRequest) {
	u, err := url.ParseRequestURI(req.Target)
	if err != nil {
		apiAnswer(w, 400, APIError{Code: CodeMalformed, Reason: "bad request target"})
		return
	}
	q := u.Query()
	switch {
	case u.Path == "/v1/me" && req.Method == "GET":
		apiAnswer(w, 200, b.Status(vid.URI))
	case u.Path == "/v1/request" && req.Method == "POST":
		host, port, err := splitTarget(q.Get("target"))
		if err != nil {
			apiAnswer(w, 400, APIError{Code: CodeMalformed, Reason: "target must be DEVICE:PORT or DEVICE:console"})
			return
		}
		dev, ref := b.checkTarget(vid, host, port)
		if ref != nil {
			apiAnswer(w, ref.status, APIError{Code: ref.code, Reason: ref.reason})
			return
		}
		g, ref, evs := b.decide(vid, dev, port, printable(q.Get("reason"), maxEventText))
		b.emit(evs)
		b.updateLED()
		ans := RequestAnswer{}
		if ref != nil {
			ans.Code, ans.Reason = ref.code, ref.reason
			b.mu.Lock()
			if x, ok := b.grants[ref.grant]; ok {
				ans.Grant = vendorView(x)
			}
			b.mu.Unlock()
		} else {
			ans.Grant = vendorView(&g)
		}
		apiAnswer(w, 200, ans)
	case u.Path == "/v1/extend" && req.Method == "POST":
		d, err := time.ParseDuration(q.Get("for"))
		if err != nil {
			apiAnswer(w, 400, APIError{Code: CodeMalformed, Reason: "for must be a duration such as 30m"})
			return
		}
		x, err := b.RequestExtension(vid, q.Get("grant"), d, printable(q.Get("reason"), maxEventText))
		if err != nil {
			apiAnswer(w, 409, APIError{Code: "extension", Reason: err.Error()})
			return
		}
		apiAnswer(w, 202, RequestAnswer{Grant: vendorView(&x), Code: CodePending, Reason: waitingFor(&x)})
	default:
		apiAnswer(w, 404, APIError{Code: "not-found", Reason: "unknown path: use GET /v1/me, POST /v1/request or POST /v1/extend"})
	}
}

// splitTarget parses DEVICE:PORT or DEVICE:console.
func splitTarget(t string) (string, int, error) {
	if h, ok := strings.CutSuffix(t, ":"+ConsoleName); ok && h != "" {
		return h, ConsolePort, nil
	}
	return splitAuthority(t)
}
