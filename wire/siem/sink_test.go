package siem

import (
	"bytes"
	"errors"
	"testing"

	"github.com/wardgate/wardgate/wire"
)

// TestWriterSinkBatchEqualsLines: a batch prints exactly what one Send
// per line prints.
func TestWriterSinkBatchEqualsLines(t *testing.T) {
	var lines []wire.Line
	for _, c := range lineCases {
		lines = append(lines, c.line)
	}
	for _, f := range Formats {
		var one, batch bytes.Buffer
		s1 := NewWriterSink(&one, newTestEncoder(t, f))
		for _, l := range lines {
			if err := s1.Send(l); err != nil {
				t.Fatal(err)
			}
		}
		if err := NewWriterSink(&batch, newTestEncoder(t, f)).SendBatch(lines); err != nil {
			t.Fatal(err)
		}
		if one.String() != batch.String() || bytes.Count(one.Bytes(), []byte("\n")) != len(lines) {
			t.Errorf("%s: batch output differs", f)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestSinksStopAtFirstError(t *testing.T) {
	var buf bytes.Buffer
	s := Sinks{NewWriterSink(failWriter{}, newTestEncoder(t, FormatJSON)), NewWriterSink(&buf, newTestEncoder(t, FormatJSON))}
	if err := s.Send(lineCases[0].line); err == nil {
		t.Error("Send hid a write error")
	}
	if err := s.SendBatch([]wire.Line{lineCases[0].line}); err == nil {
		t.Error("SendBatch hid a write error")
	}
	if buf.Len() != 0 {
		t.Error("the second sink ran after the first failed")
	}
}
