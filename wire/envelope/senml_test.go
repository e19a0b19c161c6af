package envelope

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// senmlCases is shared by the encoder and decoder tests.
var senmlCases = []struct {
	name string
	pack Pack
	wire string
}{
	{
		name: "base name and value",
		pack: Pack{{BaseName: "gw-test/", BaseTime: 1700000000, Name: "cpu", Unit: "%", Value: F(12.5)}},
		wire: "81 a5 00 63 637075 01 61 25 02 f9 4a40 21 68 67772d746573742f 22 1a 6553f100",
	},
	{
		name: "string and bool",
		pack: Pack{{Name: "link", String: S("up")}, {Name: "tamper", Bool: B(false), Time: -5}},
		wire: "82 a2 00 64 6c696e6b 03 62 7570 a3 00 66 74616d706572 04 f4 06 24",
	},
	{
		name: "empty",
		pack: Pack{},
		wire: "80",
	},
}

func TestEncodePack(t *testing.T) {
	for _, tc := range senmlCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EncodePack(tc.pack)
			if err != nil {
				t.Fatal(err)
			}
			if want := mustHex(tc.wire); !bytes.Equal(got, want) {
				t.Fatalf("got %x\nwant %x", got, want)
			}
		})
	}
}

func TestDecodePack(t *testing.T) {
	for _, tc := range senmlCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodePack(mustHex(tc.wire))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.pack) {
				t.Fatalf("got %+v, want %+v", got, tc.pack)
			}
		})
	}
}

func TestDecodePackRejects(t *testing.T) {
	for name, wire := range map[string]string{
		"two values":    "81 a2 02 01 03 61 61",
		"unknown label": "81 a1 19 0100 01",
		"not an array":  "a0",
		"dup label":     "81 a2 00 61 61 00 61 62",
	} {
		if _, err := DecodePack(mustHex(wire)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := EncodePack(Pack{{Value: F(1), Bool: B(true)}}); err == nil {
		t.Error("EncodePack accepted two values")
	}
}

func TestResolve(t *testing.T) {
	p := Pack{
		{BaseName: "gw/", BaseTime: 100, Name: "a", Value: F(1)},
		{Name: "b", Time: 2, Bool: B(true)},
	}
	r := p.Resolve()
	if r[1].Name != "gw/b" || r[1].Time != 102 || r[1].Value != true || r[0].Value != 1.0 {
		t.Fatalf("resolved %+v", r)
	}
}

func TestDecodePackFloatOrInt(t *testing.T) {
	// The same values written as floats decode to the same pack.
	p, err := DecodePack(mustHex("82 a1 22 fa 4ecaa7e2 a2 02 f9 4a40 06 f9 c500"))
	if err != nil {
		t.Fatal(err)
	}
	if p[0].BaseTime != 1700000000 || *p[1].Value != 12.5 || p[1].Time != -5 {
		t.Fatalf("%+v", p)
	}
}
