package siem

import (
	"fmt"
	"io"
	"sync"

	"github.com/wardgate/wardgate/wire"
)

// Sink receives verified lines. Send returns once the line is written
// (WriterSink) or committed to the sink's disk queue (network sinks);
// SendBatch does the same for many lines at once, in order, and commits
// them to a disk queue in one transaction.
type Sink interface {
	Send(l wire.Line) error
	SendBatch(ls []wire.Line) error
}

// WriterSink writes one encoded record per line to W (for example
// stdout). It is safe for concurrent use.
type WriterSink struct {
	enc *Encoder
	mu  sync.Mutex
	w   io.Writer
}

// NewWriterSink returns a sink writing enc's records to w.
func NewWriterSink(w io.Writer, enc *Encoder) *WriterSink { return &WriterSink{enc: enc, w: w} }

// Send encodes l and writes it with a trailing newline in one Write.
func (s *WriterSink) Send(l wire.Line) error {
	rec, err := s.enc.Encode(l)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(append(rec, '\n')); err != nil {
		return fmt.Errorf("siem: write: %w", err)
	}
	return nil
}

// SendBatch writes the records of ls in one Write.
func (s *WriterSink) SendBatch(ls []wire.Line) error {
	var buf []byte
	for _, l := range ls {
		rec, err := s.enc.Encode(l)
		if err != nil {
			return err
		}
		buf = append(append(buf, rec...), '\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(buf); err != nil {
		return fmt.Errorf("siem: write: %w", err)
	}
	return nil
}

// Sinks sends every line to each sink in turn; the first error stops it.
type Sinks []Sink

// SendBatch implements Sink.
func (s Sinks) SendBatch(ls []wire.Line) error {
	for _, k := range s {
		if err := k.SendBatch(ls); err != nil {
			return err
		}
	}
	return nil
}

// Send implements Sink.
func (s Sinks) Send(l wire.Line) error {
	for _, k := range s {
		if err := k.Send(l); err != nil {
			return err
		}
	}
	return nil
}
