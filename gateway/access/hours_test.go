package access

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// TestOffHours: outside the service hours a request is refused, or needs a
// central approval too; inside, the device's own policy applies; an active
// grant is not cut by the hours.
func TestOffHours(t *testing.T) {
	var answer atomicString
	e := newEnv(t, func(o *Options) {
		for i := range o.Devices {
			o.Devices[i].OffHours = func(time.Time) string { return answer.get() }
		}
	})
	answer.set(OffHoursRefuse)
	if re := e.refused(e.jo, "pump-07:23"); re.Code != CodeOffHours || re.Request != "" {
		t.Fatalf("off hours refuse: %+v", re)
	}
	if n := len(e.b.Snapshot().Requests); n != 0 {
		t.Fatalf("a refused off-hours request was recorded (%d pending)", n)
	}

	answer.set(OffHoursCentral)
	id := e.request(e.jo, "pump-07:23")
	g := e.b.Snapshot().Requests[0]
	if g.ID != id || !slices.Equal(g.Policy, []string{KindLocal, KindCentral}) {
		t.Fatalf("off hours central: policy %v", g.Policy)
	}
	if _, err := e.b.Approve(id, local); err != nil {
		t.Fatal(err)
	}
	if re := e.refused(e.jo, "pump-07:23"); re.Code != CodePending {
		t.Fatalf("local approval alone activated an off-hours request: %+v", re)
	}
	if _, err := e.b.Approve(id, central); err != nil {
		t.Fatal(err)
	}
	answer.set(OffHoursRefuse)
	c := e.tunnel(e.jo, "pump-07:23") // active grant: hours do not cut it
	c.Close()

	answer.set(InHours)
	id2 := e.request(e.jo, "pump-11:23")
	for _, g := range e.b.Snapshot().Requests {
		if g.ID == id2 && !slices.Equal(g.Policy, []string{KindLocal, KindCentral}) {
			t.Fatalf("in hours policy changed: %v", g.Policy)
		}
	}
}

type atomicString struct{ v atomic.Value }

func (a *atomicString) set(s string) { a.v.Store(s) }
func (a *atomicString) get() string {
	s, _ := a.v.Load().(string)
	return s
}
