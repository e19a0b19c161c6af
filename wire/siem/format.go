package siem

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/wire"
)

// Format names an output format.
type Format string

// The formats. FormatJSON is the default and prints the JSON line of
// `wardgate tail` unchanged.
const (
	FormatJSON   Format = "json"
	FormatSyslog Format = "syslog"
	FormatCEF    Format = "cef"
	FormatLEEF   Format = "leef"
)

// Formats lists the valid format names in the order the CLI shows them.
var Formats = []Format{FormatJSON, FormatSyslog, FormatCEF, FormatLEEF}

// ParseFormat checks a format name. The error names the valid values.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, len(Formats))
	for i, f := range Formats {
		names[i] = string(f)
	}
	return "", fmt.Errorf("unknown format %q: use one of %s", s, strings.Join(names, ", "))
}

// Vendor and Product name wardgate in CEF and LEEF headers; they never
// change.
const (
	Vendor  = "wardgate"
	Product = "wardgate"
	// AppName is the RFC 5424 APP-NAME.
	AppName = "wardgate"
	// PEN is the private enterprise number in the SD-IDs. 32473 is the
	// number IANA reserves for documentation (RFC 5612); a site that
	// owns a number can set EncoderOptions.PEN.
	PEN = 32473
)

// EncoderOptions configure an Encoder. The zero value is usable.
type EncoderOptions struct {
	// Version is the product version in CEF and LEEF headers; "" is
	// "unknown".
	Version string
	// PEN replaces the private enterprise number of the SD-IDs; 0 is PEN.
	PEN int
	// Clock stamps lines that carry no time (alert lines); nil is the
	// real clock.
	Clock clockwork.Clock
}

// Encoder turns lines into records of one format. The syslog format
// numbers its records (meta sequenceId 1, 2, ... 2147483647, then 1
// again). It is safe for concurrent use.
type Encoder struct {
	format Format
	o      EncoderOptions
	mu     sync.Mutex
	seq    uint32
}

// NewEncoder returns an encoder for format f.
func NewEncoder(f Format, o EncoderOptions) (*Encoder, error) {
	if _, err := ParseFormat(string(f)); err != nil {
		return nil, err
	}
	if o.Version == "" {
		o.Version = "unknown"
	}
	if o.PEN <= 0 {
		o.PEN = PEN
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	return &Encoder{format: f, o: o}, nil
}

// Format returns the encoder's format.
func (e *Encoder) Format() Format { return e.format }

// Encode returns the record of l: one line, never containing CR or LF,
// without a trailing newline.
func (e *Encoder) Encode(l wire.Line) ([]byte, error) {
	if e.format == FormatJSON {
		b, err := json.Marshal(l)
		if err != nil {
			return nil, fmt.Errorf("siem: encode json: %w", err)
		}
		return b, nil
	}
	f := Extract(l, e.o.Clock.Now())
	switch e.format {
	case FormatSyslog:
		return e.syslog(f), nil
	case FormatCEF:
		return e.cef(f), nil
	}
	return e.leef(f), nil
}

// Wrap puts a record of another format (json, cef, leef) into an RFC 5424
// message for a syslog transport: PRI, timestamp, HOSTNAME, APP-NAME and
// MSGID as in the syslog format, only the meta SD element, the record as
// MSG. A syslog record is returned unchanged.
func (e *Encoder) Wrap(l wire.Line, record []byte) []byte {
	if e.format == FormatSyslog {
		return record
	}
	return e.syslogWith(Extract(l, e.o.Clock.Now()), false, string(record))
}

func (e *Encoder) nextSeq() uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seq >= 2147483647 {
		e.seq = 0
	}
	e.seq++
	return e.seq
}

func rfc3339ms(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }
