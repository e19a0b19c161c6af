package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wardgate/wardgate/internal/atomicfile"
)

// The last known good configuration: a file that passed validation and ran
// is kept in STATE_DIR so that, when the file in /etc is later broken, the
// agent starts on it (with an alarm) instead of leaving the devices
// unprotected and unreachable.
const (
	// LastGoodFile is the last known good configuration, under STATE_DIR.
	LastGoodFile = "last-good.yaml"
	// LastGoodHashFile holds LastGoodFile's SHA-256 (hex, one line).
	LastGoodHashFile = "last-good.sha256"
)

// ErrNoLastGood is returned by LoadLastGood when no last known good
// configuration was ever saved (first boot).
var ErrNoLastGood = errors.New("no last known good configuration is stored")

// SaveLastGood keeps c, a configuration that passed validation and runs,
// as the last known good one in c's state directory: the bytes of c.File
// are written (atomically, mode 0600) with their hash. The file is re-read
// and must still hash to c.Hash; when it changed since it was loaded,
// nothing is saved and an error says so. A configuration parsed from
// memory (c.File == "") is not saved. Saving the one already stored is a
// no-op.
func SaveLastGood(c *Config) error {
	if c == nil || c.File == "" {
		return nil
	}
	dir := c.Gateway.StateDir
	if cur, err := os.ReadFile(filepath.Join(dir, LastGoodHashFile)); err == nil && strings.TrimSpace(string(cur)) == c.Hash {
		if _, err := os.Stat(filepath.Join(dir, LastGoodFile)); err == nil {
			return nil
		}
	}
	data, err := readFile(c.File)
	if err != nil {
		return fmt.Errorf("save last known good configuration: %w", err)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != c.Hash {
		return fmt.Errorf("save last known good configuration: %s changed since it was loaded; not saved", c.File)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save last known good configuration: %w", err)
	}
	// The configuration first, its hash second: a crash in between leaves
	// a mismatch that LoadLastGood reports rather than a wrong pairing.
	if err := atomicfile.Write(filepath.Join(dir, LastGoodFile), data, 0o600); err != nil {
		return fmt.Errorf("save last known good configuration: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, LastGoodHashFile), []byte(c.Hash+"\n"), 0o600); err != nil {
		return fmt.Errorf("save last known good configuration: %w", err)
	}
	return nil
}

// LoadLastGood loads the last known good configuration from stateDir,
// checking it against its stored hash and validating it again at now. It
// returns ErrNoLastGood when none was saved.
func LoadLastGood(stateDir string, now time.Time) (*Config, error) {
	path := filepath.Join(stateDir, LastGoodFile)
	want, err := os.ReadFile(filepath.Join(stateDir, LastGoodHashFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoLastGood
	}
	if err != nil {
		return nil, fmt.Errorf("last known good configuration: %w", err)
	}
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("last known good configuration: %w", err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != strings.TrimSpace(string(want)) {
		return nil, fmt.Errorf("last known good configuration %s does not match its stored hash (sha256 %s, stored %s); it is not used", path, got, strings.TrimSpace(string(want)))
	}
	return Parse(path, data, now)
}

// StateDirOf returns the state directory the configuration at path names
// (gateway.state_dir, default DefaultStateDir), reading only that key, so
// that the last known good configuration is found even when the rest of
// the file is broken. A file that is unreadable, not YAML, or whose key is
// unusable gives DefaultStateDir and the reason.
func StateDirOf(path string) (string, error) {
	data, err := readFile(path)
	if err != nil {
		return DefaultStateDir, err
	}
	root, err := parseDocument(path, data)
	if err != nil {
		return DefaultStateDir, err
	}
	gw := mapValue(root, "gateway")
	n := mapValue(gw, "state_dir")
	if n == nil || n.Tag == "!!null" {
		return DefaultStateDir, nil
	}
	if n.Kind != yaml.ScalarNode || !filepath.IsAbs(n.Value) {
		return DefaultStateDir, Problems{{File: path, Line: n.Line, Path: "gateway.state_dir", Msg: "not an absolute path"}}
	}
	return filepath.Clean(n.Value), nil
}

// ProblemList returns err's problems one per entry (each as
// FILE:LINE: path: message), for events and status; an error that is not
// Problems gives its message.
func ProblemList(err error) []string {
	if err == nil {
		return nil
	}
	var ps Problems
	if errors.As(err, &ps) {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = p.String()
		}
		return out
	}
	var out []string
	for l := range strings.Lines(err.Error()) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// IsRetired reports whether the device was taken out of service (retired:
// DATE). A retired device stays in the inventory, marked retired; its
// clinical listener is closed, its vendor grants are revoked, vendors are
// refused with code "retired", and its accounts are flagged for rotation or
// removal.
func (d *Device) IsRetired() bool { return !d.Retired.IsZero() }

// retirement checks retired: and replaced_by: on every device; ids maps
// device ids to their paths.
func (v *validator) retirement(c *Config, ids map[string]string) {
	for i := range c.Devices {
		dev := &c.Devices[i]
		p := fmt.Sprintf("devices[%d]", i)
		if !dev.Retired.IsZero() && dev.Retired.After(v.now) {
			v.add(p+".retired", "%s is in the future; give the date the device was taken out of service (add retired: on that day)", dev.Retired)
		}
		if dev.ReplacedBy == "" {
			continue
		}
		switch other, ok := ids[dev.ReplacedBy]; {
		case dev.Retired.IsZero():
			v.add(p+".replaced_by", "only a retired device is replaced; add retired: YYYY-MM-DD (the day it left service) or remove replaced_by")
		case dev.ReplacedBy == dev.ID:
			v.add(p+".replaced_by", "a device cannot replace itself; name the device that took its place")
		case !ok:
			v.add(p+".replaced_by", "%q is not a configured device; add the replacement under devices or fix the name", dev.ReplacedBy)
		default:
			if r := &c.Devices[indexOf(other)]; r.IsRetired() && r.ReplacedBy == dev.ID {
				v.add(p+".replaced_by", "%s and %s replace each other; one of them must be in service", dev.ID, r.ID)
			}
		}
	}
}

// indexOf returns N of a path "devices[N]".
func indexOf(path string) int {
	var n int
	fmt.Sscanf(path, "devices[%d]", &n)
	return n
}

// Update configures signed self-update (`wardgate update apply BUNDLE`).
type Update struct {
	// ReleaseKeys are the keys a release manifest must be signed with:
	// absolute paths of PEM public keys (or certificates), or
	// "sha256:HEX", the SHA-256 of a key's SubjectPublicKeyInfo. Empty:
	// every update is refused.
	ReleaseKeys []string `yaml:"release_keys"`
	// InstallDir holds the two slots (wardgate.a, wardgate.b) and the link
	// wardgate naming the active one. Absolute; default
	// DefaultUpdateInstallDir.
	InstallDir string `yaml:"install_dir"`
	// HealthTimeout bounds the wait for a new release to be healthy
	// before it is rolled back, 10s to 10m (default 2m).
	HealthTimeout Duration `yaml:"health_timeout"`
}

var spkiPin = regexp.MustCompile(`^sha256:[0-9a-fA-F]{64}$`)

func (v *validator) update(c *Config) {
	u := &c.Update
	for i, k := range u.ReleaseKeys {
		p := fmt.Sprintf("update.release_keys[%d]", i)
		switch {
		case strings.HasPrefix(k, "sha256:"):
			if !spkiPin.MatchString(k) {
				v.add(p, "%q is not sha256: followed by 64 hexadecimal digits (the SHA-256 of the key's SubjectPublicKeyInfo)", k)
			}
		case !filepath.IsAbs(k):
			v.add(p, "%q is neither sha256:HEX nor an absolute path of a PEM public key, e.g. /etc/wardgate/release.pem", k)
		}
	}
	if !filepath.IsAbs(u.InstallDir) {
		v.add("update.install_dir", "%q is not an absolute path; use one such as %s", u.InstallDir, DefaultUpdateInstallDir)
	}
	if d := u.HealthTimeout.D(); d < 10*time.Second || d > 10*time.Minute {
		v.add("update.health_timeout", "%s is outside the allowed range; use between 10s and 10m", u.HealthTimeout)
	}
}
