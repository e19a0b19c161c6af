// Package fleete2e holds end-to-end tests that need both sides of the
// fleet contract at once (the gateway's uploader against central's archive
// over real HTTPS mTLS). Only cmd may import both gateway and central, so
// these tests live here; the package has no code of its own.
package fleete2e
