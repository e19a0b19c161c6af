package access

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/wardgate/wardgate/gateway/access/recording"
)

// Injection is a service account whose login the gateway performs itself
// when a vendor's tunnel to Port opens: the vendor never learns the
// secret. The secret is read at each use from SecretFile (mode 0600 or
// stricter) or from the systemd credential Credential
// ($CREDENTIALS_DIRECTORY/NAME); it never enters a recording, an event or
// a log line.
type Injection struct {
	Account    string // the account's id
	Owner      string // the account's accountable owner
	Port       int    // the service port, or ConsolePort
	User       string // sent for a step whose Send is SendUser
	SecretFile string
	Credential string
	Login      []LoginStep
	Timeout    time.Duration // the whole dialogue (default DefaultInjectTimeout)
	Newline    string        // appended to every send (default "\r\n")
}

// LoginStep waits until the device's output matches Expect, then sends
// Send: SendUser, SendSecret, or literal text ("" sends nothing).
type LoginStep struct {
	Expect *regexp.Regexp
	Send   string
}

// Special values of LoginStep.Send.
const (
	SendUser   = "user"
	SendSecret = "secret"
)

// DefaultInjectTimeout bounds a login dialogue without a Timeout.
const DefaultInjectTimeout = 15 * time.Second

// maxLoginBuffer bounds the device output the matcher keeps: older bytes
// are dropped (they are already recorded) and a prompt must fit in it.
const maxLoginBuffer = 4096

// withheld replaces the secret wherever the device echoes it.
var withheld = []byte("[secret withheld]")

func (in Injection) validate() error {
	if in.Account == "" {
		return errors.New("injected account without an id")
	}
	if (in.SecretFile == "") == (in.Credential == "") {
		return fmt.Errorf("account %s: give exactly one of secret_file and credential", in.Account)
	}
	if len(in.Login) == 0 {
		return fmt.Errorf("account %s: empty login dialogue", in.Account)
	}
	for i, st := range in.Login {
		if st.Expect == nil {
			return fmt.Errorf("account %s: login step %d has no expect", in.Account, i+1)
		}
		if st.Send == SendSecret && i == len(in.Login)-1 {
			return fmt.Errorf("account %s: the login must end with an expect after the secret (the device's prompt), so that a refused login is seen and any echo is withheld", in.Account)
		}
		if st.Send == SendUser && in.User == "" {
			return fmt.Errorf("account %s: login step %d sends the user but no user is set", in.Account, i+1)
		}
	}
	return nil
}

// ReadSecret reads an injection's secret: the systemd credential (under
// $CREDENTIALS_DIRECTORY) or the secret file, which must be a regular file
// not readable or writable by group or others. One trailing newline is
// dropped.
func ReadSecret(in Injection) ([]byte, error) {
	path := in.SecretFile
	if in.Credential != "" {
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return nil, fmt.Errorf("credential %s: $CREDENTIALS_DIRECTORY is not set: run the agent under systemd with LoadCredential=%s:PATH (or use secret_file)", in.Credential, in.Credential)
		}
		path = filepath.Join(dir, in.Credential)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secret of account %s: %w", in.Account, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secret of account %s: %w", in.Account, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("secret of account %s: %s is not a regular file", in.Account, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secret of account %s: %s has mode %04o, open to group or others: run chmod 600 %s (refused until then)", in.Account, path, uint32(perm), path)
	}
	buf, err := io.ReadAll(io.LimitReader(f, 4097))
	if err != nil {
		return nil, fmt.Errorf("secret of account %s: %w", in.Account, err)
	}
	if len(buf) > 4096 {
		return nil, fmt.Errorf("secret of account %s: %s is longer than 4096 bytes", in.Account, path)
	}
	buf = bytes.TrimSuffix(buf, []byte("\n"))
	buf = bytes.TrimSuffix(buf, []byte("\r"))
	if len(buf) == 0 {
		return nil, fmt.Errorf("secret of account %s: %s is empty", in.Account, path)
	}
	return buf, nil
}

// loginMatcher buffers a device's output during a login dialogue and finds
// each step's expected prompt in it. It never holds more than max bytes:
// what it drops, consumes or leaves over is handed back so it can be
// recorded. It is not safe for concurrent use.
type loginMatcher struct {
	buf []byte
	max int
}

// feed adds device output p and returns the bytes dropped to stay within max.
func (m *loginMatcher) feed(p []byte) (dropped []byte) {
	m.buf = append(m.buf, p...)
	if over := len(m.buf) - m.max; over > 0 {
		dropped = append([]byte(nil), m.buf[:over]...)
		m.buf = append(m.buf[:0], m.buf[over:]...)
	}
	return dropped
}

// match finds re in the buffer; on a match it returns the bytes up to the
// match's end (consumed) and keeps the rest.
func (m *loginMatcher) match(re *regexp.Regexp) (consumed []byte, ok bool) {
	loc := re.FindIndex(m.buf)
	if loc == nil {
		return nil, false
	}
	consumed = append([]byte(nil), m.buf[:loc[1]]...)
	m.buf = append(m.buf[:0], m.buf[loc[1]:]...)
	return consumed, true
}

// rest returns and clears what is left.
func (m *loginMatcher) rest() []byte {
	r := m.buf
	m.buf = nil
	return r
}

// scrub replaces every occurrence of secret in p.
func scrub(p, secret []byte) []byte {
	if len(secret) == 0 || !bytes.Contains(p, secret) {
		return p
	}
	return bytes.ReplaceAll(p, secret, withheld)
}

// injectionFor returns dev's injected account for port, if any.
func injectionFor(dev Device, port int) (Injection, bool) {
	for _, in := range dev.Inject {
		if in.Port == port {
			return in, true
		}
	}
	return Injection{}, false
}

// injectLogin performs the login dialogue of the account injected on port
// (if any) on the session's device connection. It returns the device
// output from the start of what the last step matched (the prompt the
// vendor continues at, and anything after it: already recorded, the secret
// withheld) and the account id; a failure is a refusal with the reason for
// the vendor.
func (b *Broker) injectLogin(s *session, dev Device, port int, vid VendorIdentity) ([]byte, string, *refusal) {
	in, ok := injectionFor(dev, port)
	if !ok {
		return nil, "", nil
	}
	base := Event{Grant: s.info.Grant, Session: s.info.ID, Vendor: vid.URI, Device: dev.ID, Port: port, Account: in.Account, Owner: in.Owner}
	fail := func(why, detail string) ([]byte, string, *refusal) {
		ev := base
		ev.Time, ev.Kind, ev.Reason, ev.End = b.clock.Now(), EvInjectFailed, why, EndInjectFailed
		b.log.Warn("credential injection failed", "session", s.info.ID, "account", in.Account, "reason", why, "err", detail)
		_ = s.rec.Note(b.clock.Now(), recording.NoteInject, "login to account "+in.Account+" failed: "+why)
		b.emit([]Event{ev})
		return nil, in.Account, &refusal{502, CodeInjectFailed, fmt.Sprintf("the gateway could not log in to service account %s on %s: %s; tell the device owner (%s)", in.Account, dev.ID, why, in.Owner), s.info.Grant}
	}
	secret, err := b.o.Secrets(in)
	if err != nil {
		return fail("its secret cannot be read on the gateway", err.Error())
	}
	defer clear(secret)
	_ = s.rec.Note(b.clock.Now(), recording.NoteInject, fmt.Sprintf("gateway logs in to service account %s (owner %s) for %s; the secret is never recorded", in.Account, in.Owner, vid.URI))

	timeout := in.Timeout
	if timeout <= 0 {
		timeout = DefaultInjectTimeout
	}
	nl := in.Newline
	if nl == "" {
		nl = "\r\n"
	}
	var timedOut atomic.Bool
	t := b.clock.AfterFunc(timeout, func() {
		timedOut.Store(true)
		_ = s.dev.Close()
	})
	defer t.Stop()

	record := func(p []byte) error {
		if len(p) == 0 {
			return nil
		}
		p = scrub(p, secret)
		return s.rec.Write(recording.FromDevice, b.clock.Now(), p)
	}
	m := &loginMatcher{max: maxLoginBuffer}
	buf := make([]byte, 4096)
	var last []byte // what the last step matched: the vendor sees it (the prompt)
	for i, st := range in.Login {
		for {
			consumed, ok := m.match(st.Expect)
			if ok {
				last = scrub(consumed, secret)
				if err := record(consumed); err != nil {
					return fail("the session cannot be recorded", err.Error())
				}
				break
			}
			n, err := s.dev.Read(buf)
			if n > 0 {
				if err := record(m.feed(buf[:n])); err != nil {
					return fail("the session cannot be recorded", err.Error())
				}
			}
			if err != nil {
				_ = record(m.rest())
				if timedOut.Load() {
					return fail(fmt.Sprintf("step %d: the device did not show %q within %s", i+1, st.Expect.String(), timeout), "timeout")
				}
				return fail(fmt.Sprintf("step %d: the device closed the connection while the gateway waited for %q (wrong user or secret?)", i+1, st.Expect.String()), err.Error())
			}
		}
		var out []byte
		var note string
		switch st.Send {
		case "":
			continue
		case SendUser:
			out, note = []byte(in.User+nl), "sent the user name "+strconv.Quote(in.User)
		case SendSecret:
			out, note = append(append([]byte(nil), secret...), nl...), "sent the secret of account "+in.Account+" (withheld)"
		default:
			out, note = []byte(st.Send+nl), "sent "+strconv.Quote(st.Send)
		}
		if err := s.rec.Note(b.clock.Now(), recording.NoteInject, note); err != nil {
			clear(out)
			return fail("the session cannot be recorded", err.Error())
		}
		_, err := s.dev.Write(out)
		clear(out)
		if err != nil {
			if timedOut.Load() {
				return fail(fmt.Sprintf("step %d: timed out after %s", i+1, timeout), "timeout")
			}
			return fail(fmt.Sprintf("step %d: the device closed the connection", i+1), err.Error())
		}
	}
	if !t.Stop() || timedOut.Load() {
		return fail(fmt.Sprintf("the login did not finish within %s", timeout), "timeout")
	}
	rest := scrub(m.rest(), secret)
	if err := record(rest); err != nil {
		return fail("the session cannot be recorded", err.Error())
	}
	left := append(last, rest...)
	_ = s.rec.Note(b.clock.Now(), recording.NoteInject, "logged in to account "+in.Account+"; session handed over to the vendor")
	ev := base
	ev.Time, ev.Kind = b.clock.Now(), EvInject
	b.log.Info("credential injected", "session", s.info.ID, "account", in.Account, "owner", in.Owner, "vendor", vid.URI)
	b.emit([]Event{ev})
	return left, in.Account, nil
}
