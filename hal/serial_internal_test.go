package hal

import (
	"testing"

	"go.bug.st/serial"
)

func TestSerialMode(t *testing.T) {
	cases := []struct {
		cfg    SerialConfig
		want   serial.Mode
		rtscts bool
	}{
		{SerialConfig{Port: "p"}, serial.Mode{BaudRate: 9600, DataBits: 8}, false},
		{SerialConfig{Port: "p", Baud: 115200, DataBits: 7, Parity: "even", StopBits: "2"}, serial.Mode{BaudRate: 115200, DataBits: 7, Parity: serial.EvenParity, StopBits: serial.TwoStopBits}, false},
		{SerialConfig{Port: "p", Parity: "odd", Flow: "rtscts"}, serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.OddParity}, true},
		{SerialConfig{Port: "p", DataBits: 5, Parity: "mark", StopBits: "1", Flow: "none"}, serial.Mode{BaudRate: 9600, DataBits: 5, Parity: serial.MarkParity}, false},
		{SerialConfig{Port: "p", DataBits: 6, Parity: "space"}, serial.Mode{BaudRate: 9600, DataBits: 6, Parity: serial.SpaceParity}, false},
		{SerialConfig{Port: "p", Parity: "none"}, serial.Mode{BaudRate: 9600, DataBits: 8}, false},
	}
	for _, c := range cases {
		m, rtscts, err := serialMode(c.cfg)
		if err != nil {
			t.Fatalf("%+v: %v", c.cfg, err)
		}
		if *m != c.want || rtscts != c.rtscts {
			t.Errorf("%+v -> %+v rtscts %v, want %+v %v", c.cfg, *m, rtscts, c.want, c.rtscts)
		}
	}
}
