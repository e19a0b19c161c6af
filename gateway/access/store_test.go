package access

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wardgate/wardgate/gateway/authority"
)

// An older version kept locks and the tamper latch in the access store: the
// authority imports them once and the store drops them.
func TestLegacyLocksMigrate(t *testing.T) {
	st, err := OpenStore(filepath.Join(t.TempDir(), "access.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if locks, tamper, err := st.Legacy(); err != nil || len(locks) != 0 || tamper {
		t.Fatalf("fresh store: %v %v %v", locks, tamper, err)
	}
	created := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	// Written exactly as the older version did.
	old := map[string]string{
		"spiffe://" + td + "/vendor/acme-medical/*": `{"identity":"spiffe://` + td + `/vendor/acme-medical/*","reason":"incident 77","actor":{"kind":"central","via":"command","uid":0,"approver":"spiffe://` + td + `/approver/sec/ann"},"created":"2026-11-01T08:00:00Z"}`,
	}
	err = st.db.Update(func(tx *bolt.Tx) error {
		lb, err := tx.CreateBucketIfNotExists(bucketLocks)
		if err != nil {
			return err
		}
		for k, v := range old {
			if err := lb.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		mb, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		data, _ := json.Marshal(tamperRec{Latched: true, Since: created})
		return mb.Put(keyTamper, data)
	})
	if err != nil {
		t.Fatal(err)
	}
	locks, tamper, err := st.Legacy()
	if err != nil || len(locks) != 1 || !tamper {
		t.Fatalf("legacy: %+v %v %v", locks, tamper, err)
	}
	if l := locks[0]; l.Reason != "incident 77" || l.Actor.Approver != "spiffe://"+td+"/approver/sec/ann" || !l.Created.Equal(created) {
		t.Fatalf("lock %+v", l)
	}
	au, err := authority.Open(authority.Options{Path: filepath.Join(t.TempDir(), "authority.db"), TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	defer au.Close()
	if ok, err := au.Import(locks, tamper); !ok || err != nil {
		t.Fatalf("import: %v %v", ok, err)
	}
	if ok, _ := au.Locked(joURI); !ok || !au.Tampered() {
		t.Fatal("imported state not in force")
	}
	for range 2 { // dropping twice is harmless
		if err := st.DropLegacy(); err != nil {
			t.Fatal(err)
		}
	}
	if locks, tamper, err := st.Legacy(); err != nil || len(locks) != 0 || tamper {
		t.Fatalf("after drop: %v %v %v", locks, tamper, err)
	}
}

func TestLegacyCorrupt(t *testing.T) {
	st, err := OpenStore(filepath.Join(t.TempDir(), "access.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketLocks)
		if err != nil {
			return err
		}
		return b.Put([]byte("x"), []byte("{"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Legacy(); err == nil {
		t.Fatal("corrupt lock record accepted")
	}
}
