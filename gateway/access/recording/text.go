package recording

import (
	"time"

	"github.com/wardgate/wardgate/wire/recchain"
)

// Note kinds.
const (
	NoteInject    = recchain.NoteInject
	NoteEncrypted = recchain.NoteEncrypted
)

// Note records a gateway remark at time t (for example that the gateway
// sent a service account's secret, never the secret itself).
func (w *Writer) Note(t time.Time, kind, text string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.append(recchain.Body{Type: TypeNote, Time: t.UnixNano(), Note: &Note{Kind: kind, Text: text}}, true)
}
