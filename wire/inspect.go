package wire

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
)

// Line is one JSON line of `wardgate tail`. A message line has Alert ""
// and Verified true; alert lines (verify_failed, gap, topic_mismatch)
// name what is wrong.
type Line struct {
	Alert      string `json:"alert,omitempty"`
	Topic      string `json:"topic,omitempty"`
	Gateway    string `json:"gateway"`
	Session    uint64 `json:"session,omitempty"`
	Seq        uint64 `json:"seq,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Time       string `json:"time,omitempty"` // RFC 3339, UTC, from the message
	Historical bool   `json:"historical,omitempty"`
	Verified   bool   `json:"verified"`
	Signer     string `json:"signer,omitempty"`
	Body       any    `json:"body,omitempty"`
	Error      string `json:"error,omitempty"`
	GapFrom    uint64 `json:"gap_from,omitempty"`
	GapTo      uint64 `json:"gap_to,omitempty"`
}

// Inspect verifies one received message and turns it into a Line. ok is
// false for alert lines.
func Inspect(topic string, payload []byte, verify envelope.ChainVerifier, now time.Time) (Line, bool) {
	l, _, ok := InspectMessage(topic, payload, verify, now)
	return l, ok
}

// InspectMessage is Inspect that also returns the verified message (nil
// unless ok), so that a consumer can decode the body into the typed body
// structs (Birth, Event, DecodeInventory, ...) without verifying twice.
func InspectMessage(topic string, payload []byte, verify envelope.ChainVerifier, now time.Time) (Line, *envelope.Message, bool) {
	topicGW := ""
	if rest, found := strings.CutPrefix(topic, TopicPrefix); found {
		topicGW, _, _ = strings.Cut(rest, "/")
	}
	if strings.HasSuffix(topic, "/cmd") {
		return commandLine(topic, topicGW, payload, verify, now), nil, false
	}
	m, err := envelope.Verify(payload, verify, now)
	if errors.Is(err, envelope.ErrUntrusted) {
		m, err = verifyWill(payload, verify, now, err)
	}
	if err != nil {
		return Line{Alert: "verify_failed", Topic: topic, Gateway: topicGW, Error: err.Error()}, nil, false
	}
	l := Line{Topic: topic, Gateway: m.Gateway, Session: m.Session, Seq: m.Seq, Kind: string(m.Kind),
		Time: time.UnixMilli(m.Time).UTC().Format(time.RFC3339Nano), Historical: m.Historical,
		Verified: true, Signer: m.Signer}
	if topicGW != m.Gateway || topic != Topic(m.Gateway, m.Kind) {
		l.Alert, l.Verified, l.Error = "topic_mismatch", false, fmt.Sprintf("message of gateway %q kind %s on topic %s", m.Gateway, m.Kind, topic)
		return l, nil, false
	}
	body, err := DecodeBody(m.Kind, m.Body)
	if err != nil {
		l.Alert, l.Error = "body_invalid", err.Error()
		return l, nil, false
	}
	l.Body = body
	return l, m, true
}

// DecodeBody strictly decodes a body into JSON-friendly values: metrics
// become a list of resolved SenML records with RFC 8428 JSON labels (n, u,
// v, vs, vb, t); other bodies become maps with text keys; byte strings are
// base64 in JSON.
func DecodeBody(kind envelope.Kind, body []byte) (any, error) {
	if kind == envelope.KindMetrics {
		p, err := envelope.DecodePack(body)
		if err != nil {
			return nil, err
		}
		out := make([]map[string]any, 0, len(p))
		for _, r := range p.Resolve() {
			x := map[string]any{"n": r.Name, "t": r.Time}
			if r.Unit != "" {
				x["u"] = r.Unit
			}
			switch v := r.Value.(type) {
			case float64:
				x["v"] = v
			case string:
				x["vs"] = v
			case bool:
				x["vb"] = v
			}
			out = append(out, x)
		}
		return out, nil
	}
	var v any
	if err := envelope.Unmarshal(body, &v); err != nil {
		return nil, err
	}
	return jsonable(v), nil
}

func jsonable(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i := range x {
			x[i] = jsonable(x[i])
		}
		return x
	default:
		return v
	}
}

// commandLine describes a command seen on a .../cmd topic (central's own
// messages, signed by approvers). Verified says whether its signature and
// signer chain verify; the gateway decides whether the signer may command.
func commandLine(topic, gw string, payload []byte, verify envelope.ChainVerifier, now time.Time) Line {
	l := Line{Topic: topic, Gateway: gw, Kind: "command"}
	s, p, err := command.Decode(payload)
	if err == nil {
		err = s.VerifySignature()
	}
	if err == nil {
		l.Signer, err = verify(s.Chain, now)
	}
	if err != nil {
		l.Alert, l.Error = "verify_failed", err.Error()
		return l
	}
	l.Verified = true
	l.Time = time.UnixMilli(p.IssuedAt).UTC().Format(time.RFC3339Nano)
	l.Body = map[string]any{"gateway": p.Gateway, "command": p.Name, "args": p.Args, "nonce": p.Nonce,
		"exp": time.UnixMilli(p.Expires).UTC().Format(time.RFC3339Nano)}
	return l
}

// verifyWill accepts a death Will whose certificate expired after the
// gateway signed it: the Will is signed at connect time and a connection
// can outlive the short-lived certificate. The chain is then verified at
// the Will's own time, which must not be in the future.
func verifyWill(payload []byte, verify envelope.ChainVerifier, now time.Time, orig error) (*envelope.Message, error) {
	s, err := envelope.Parse(payload)
	if err != nil {
		return nil, orig
	}
	env, err := envelope.DecodePayload(s.Payload)
	if err != nil || env.Kind != envelope.KindDeath {
		return nil, orig
	}
	at := time.UnixMilli(env.Time)
	if at.After(now) {
		return nil, orig
	}
	m, err := envelope.Verify(payload, verify, at)
	if err != nil {
		return nil, orig
	}
	return m, nil
}
