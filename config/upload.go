package config

import "net/url"

// Bounds of gateway.recordings.upload.max_rate (bytes per second).
const (
	MinUploadMaxRate = 8 << 10
	MaxUploadMaxRate = 1 << 30
)

// RecordingsUpload sends ended vendor session recordings to central's
// archive over HTTPS with the gateway's certificate; a recording is
// deleted from the gateway only once central returned its signed receipt.
type RecordingsUpload struct {
	// URL is central's HTTPS listener, https://HOST:PORT.
	URL string `yaml:"url"`
	// MaxRate bounds the upload in bytes per second (default
	// DefaultUploadMaxRate, 256KiB), 8KiB to 1GiB.
	MaxRate Size `yaml:"max_rate"`
}

// upload validates gateway.recordings.upload.
func (v *validator) upload(c *Config) {
	up := c.Gateway.Recordings.Upload
	if up == nil {
		return
	}
	const p = "gateway.recordings.upload"
	u, err := url.Parse(up.URL)
	switch {
	case up.URL == "":
		v.add(p+".url", "missing; give central's HTTPS address, e.g. https://central.hospital.example:8444, or leave upload out")
	case err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "":
		v.add(p+".url", "%q is not an https://HOST:PORT address of central; write e.g. https://central.hospital.example:8444", up.URL)
	}
	if up.MaxRate < MinUploadMaxRate || up.MaxRate > MaxUploadMaxRate {
		v.add(p+".max_rate", "%s is outside the allowed range; use between 8KiB and 1GiB per second (256KiB is usual)", up.MaxRate)
	}
}
