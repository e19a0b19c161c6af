package envelope

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// envelopeCases is shared by the encoder and the decoder tests: encoding
// env gives wire, decoding wire gives env.
var envelopeCases = []struct {
	name string
	env  Envelope
	wire string
}{
	{
		name: "event",
		env: Envelope{Version: 1, Gateway: "gw-test", Session: 2, Seq: 7, Time: 1700000000000,
			Kind: KindEvent, Body: mustHex("a1 61 6b 61 61")},
		wire: "a8 01 01 02 67 67772d74657374 03 02 04 07 05 1b 0000018bcfe56800 06 65 6576656e74 07 f4 08 a1 616b 6161",
	},
	{
		name: "historical metrics",
		env: Envelope{Version: 1, Gateway: "a", Session: 0, Seq: 24, Time: 0,
			Kind: KindMetrics, Historical: true, Body: mustHex("80")},
		wire: "a8 01 01 02 61 61 03 00 04 18 18 05 00 06 67 6d657472696373 07 f5 08 80",
	},
	{
		name: "reply large seq",
		env: Envelope{Version: 1, Gateway: "gw-icu3-12", Session: 1 << 32, Seq: 1<<64 - 1, Time: 1,
			Kind: KindReply, Body: mustHex("f6")},
		wire: "a8 01 01 02 6a 67772d69637533 2d3132 03 1b 0000000100000000 04 1b ffffffffffffffff 05 01 06 65 7265706c79 07 f4 08 f6",
	},
}

func TestEncodePayload(t *testing.T) {
	for _, tc := range envelopeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EncodePayload(&tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if want := mustHex(tc.wire); !bytes.Equal(got, want) {
				t.Fatalf("encoded\n got %x\nwant %x", got, want)
			}
		})
	}
}

func TestDecodePayload(t *testing.T) {
	for _, tc := range envelopeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodePayload(mustHex(tc.wire))
			if err != nil {
				t.Fatal(err)
			}
			if got.Gateway != tc.env.Gateway || got.Seq != tc.env.Seq || got.Session != tc.env.Session ||
				got.Time != tc.env.Time || got.Kind != tc.env.Kind || got.Historical != tc.env.Historical ||
				!bytes.Equal(got.Body, tc.env.Body) || got.Version != 1 {
				t.Fatalf("decoded %+v, want %+v", got, tc.env)
			}
		})
	}
}

func TestDecodePayloadRejects(t *testing.T) {
	cases := []struct {
		name string
		wire string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"not a map", "80", ErrMalformed},
		{"truncated", "a8 01 01 02", ErrMalformed},
		{"duplicate key", "a9 01 01 01 01 02 61 61 03 00 04 00 05 00 06 65 6576656e74 07 f4 08 f6", ErrMalformed},
		{"missing body", "a7 01 01 02 61 61 03 00 04 00 05 00 06 65 6576656e74 07 f4", ErrMalformed},
		{"unknown key", "a9 01 01 02 61 61 03 00 04 00 05 00 06 65 6576656e74 07 f4 08 f6 09 00", ErrMalformed},
		{"indefinite map", "bf 01 01 02 61 61 03 00 04 00 05 00 06 65 6576656e74 07 f4 08 f6 ff", ErrMalformed},
		{"indefinite body", "a8 01 01 02 61 61 03 00 04 00 05 00 06 65 6576656e74 07 f4 08 9f ff", ErrMalformed},
		{"version 2", "a8 01 02 02 61 61 03 00 04 00 05 00 06 65 6576656e74 07 f4 08 f6", ErrUnsupported},
		{"unknown kind", "a8 01 01 02 61 61 03 00 04 00 05 00 06 63 666f6f 07 f4 08 f6", ErrUnsupported},
		{"bad gateway", "a8 01 01 02 61 41 03 00 04 00 05 00 06 65 6576656e74 07 f4 08 f6", ErrMalformed},
		{"negative time", "a8 01 01 02 61 61 03 00 04 00 05 20 06 65 6576656e74 07 f4 08 f6", ErrMalformed},
		{"negative seq", "a8 01 01 02 61 61 03 00 04 20 05 00 06 65 6576656e74 07 f4 08 f6", ErrMalformed},
		{"trailing bytes", "a8 01 01 02 61 61 03 00 04 00 05 00 06 65 6576656e74 07 f4 08 f6 00", ErrMalformed},
		{"deep nesting", "a8 01 01 02 61 61 03 00 04 00 05 00 06 65 6576656e74 07 f4 08 " + strings.Repeat("81", 40) + "00", ErrMalformed},
		{"invalid utf8", "a8 01 01 02 61 ff 03 00 04 00 05 00 06 65 6576656e74 07 f4 08 f6", ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodePayload(mustHex(tc.wire))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDecodeLimits(t *testing.T) {
	big := make([]any, MaxArrayElements+1)
	for i := range big {
		big[i] = 0
	}
	b, _ := cbor.Marshal(big)
	var v any
	if err := Unmarshal(b, &v); !errors.Is(err, ErrMalformed) {
		t.Fatalf("array over limit: %v", err)
	}
	m := map[int]int{}
	for i := 0; i <= MaxMapPairs; i++ {
		m[i] = i
	}
	b, _ = cbor.Marshal(m)
	if err := Unmarshal(b, &v); !errors.Is(err, ErrMalformed) {
		t.Fatalf("map over limit: %v", err)
	}
	b, _ = cbor.Marshal(make([]byte, MaxMessageSize))
	if err := Unmarshal(b, &v); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("bytes over limit: %v", err)
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	for _, e := range []Envelope{
		{Version: 1, Gateway: "gw", Kind: "nope", Body: mustHex("f6")},
		{Version: 1, Gateway: "GW", Kind: KindEvent, Body: mustHex("f6")},
		{Version: 1, Gateway: "gw", Kind: KindEvent},
		{Version: 1, Gateway: "gw", Kind: KindEvent, Body: mustHex("9f ff")},
	} {
		if _, err := EncodePayload(&e); err == nil {
			t.Errorf("EncodePayload(%+v) succeeded", e)
		}
	}
}

var _ = time.Second
