package envelope

import (
	"fmt"
	"math"
)

// Record is one SenML record with the RFC 8428 CBOR integer labels.
// Pointer fields are absent when nil. Exactly one of V, VS, VB may be set
// (a record with none of them only carries base values).
type Record struct {
	BaseName string   `cbor:"-2,keyasint,omitempty" json:"bn,omitempty"`
	BaseTime float64  `cbor:"-3,keyasint,omitempty" json:"bt,omitempty"`
	Name     string   `cbor:"0,keyasint,omitempty" json:"n,omitempty"`
	Unit     string   `cbor:"1,keyasint,omitempty" json:"u,omitempty"`
	Value    *float64 `cbor:"2,keyasint,omitempty" json:"v,omitempty"`
	String   *string  `cbor:"3,keyasint,omitempty" json:"vs,omitempty"`
	Bool     *bool    `cbor:"4,keyasint,omitempty" json:"vb,omitempty"`
	Sum      *float64 `cbor:"5,keyasint,omitempty" json:"s,omitempty"`
	Time     float64  `cbor:"6,keyasint,omitempty" json:"t,omitempty"`
}

// Pack is a SenML pack: an array of records.
type Pack []Record

// F, S and B return pointers for Record values.
func F(v float64) *float64 { return &v }

// S returns a pointer to v.
func S(v string) *string { return &v }

// B returns a pointer to v.
func B(v bool) *bool { return &v }

func (r *Record) check() error {
	n := 0
	for _, set := range []bool{r.Value != nil, r.String != nil, r.Bool != nil} {
		if set {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("%w: senml record %q has more than one value", ErrMalformed, r.BaseName+r.Name)
	}
	return nil
}

// EncodePack encodes p deterministically (the smallest float encoding that
// keeps the value exact is chosen by the encoder).
func EncodePack(p Pack) ([]byte, error) {
	for i := range p {
		if err := p[i].check(); err != nil {
			return nil, err
		}
	}
	return encMode.Marshal(p)
}

// DecodePack strictly decodes a SenML-CBOR pack. Unknown labels are
// rejected (this build knows the RFC 8428 base set used by wardgate).
func DecodePack(data []byte) (Pack, error) {
	var p Pack
	if err := Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("senml: %w", err)
	}
	for i := range p {
		if err := p[i].check(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Resolved is one record with base name and base time applied.
type Resolved struct {
	Name  string
	Unit  string
	Time  float64
	Value any // float64, string or bool; nil when the record has none
}

// Resolve applies base names and base times (RFC 8428 section 4.6).
func (p Pack) Resolve() []Resolved {
	var bn string
	var bt float64
	out := make([]Resolved, 0, len(p))
	for _, r := range p {
		if r.BaseName != "" {
			bn = r.BaseName
		}
		if r.BaseTime != 0 {
			bt = r.BaseTime
		}
		x := Resolved{Name: bn + r.Name, Unit: r.Unit, Time: bt + r.Time}
		switch {
		case r.Value != nil:
			x.Value = *r.Value
		case r.String != nil:
			x.Value = *r.String
		case r.Bool != nil:
			x.Value = *r.Bool
		case r.Sum != nil:
			x.Value = *r.Sum
		}
		out = append(out, x)
	}
	return out
}

// wireRecord is Record with numbers as any: integral values are written as
// CBOR integers (RFC 8428 section 6 allows any CBOR number type that
// converts exactly to the same double).
type wireRecord struct {
	BaseName string  `cbor:"-2,keyasint,omitempty"`
	BaseTime any     `cbor:"-3,keyasint,omitempty"`
	Name     string  `cbor:"0,keyasint,omitempty"`
	Unit     string  `cbor:"1,keyasint,omitempty"`
	Value    any     `cbor:"2,keyasint,omitempty"`
	String   *string `cbor:"3,keyasint,omitempty"`
	Bool     *bool   `cbor:"4,keyasint,omitempty"`
	Sum      any     `cbor:"5,keyasint,omitempty"`
	Time     any     `cbor:"6,keyasint,omitempty"`
}

const maxExactInt = 1 << 53

func num(f float64) any {
	if f == math.Trunc(f) && math.Abs(f) < maxExactInt && !(f == 0 && math.Signbit(f)) {
		if f >= 0 {
			return uint64(f)
		}
		return int64(f)
	}
	return f
}

func numPtr(f *float64) any {
	if f == nil {
		return nil
	}
	return num(*f)
}

func numOmit(f float64) any {
	if f == 0 {
		return nil
	}
	return num(f)
}

// MarshalCBOR writes integral numbers as CBOR integers.
func (r Record) MarshalCBOR() ([]byte, error) {
	return encMode.Marshal(wireRecord{
		BaseName: r.BaseName, BaseTime: numOmit(r.BaseTime), Name: r.Name, Unit: r.Unit,
		Value: numPtr(r.Value), String: r.String, Bool: r.Bool, Sum: numPtr(r.Sum), Time: numOmit(r.Time),
	})
}
