// Package web is wardgate-central's HTTP side: the JSON API under
// /api/v1/ (documented field by field in docs/central.md), the
// server-rendered HTML pages (html/template, embedded), live updates by
// Server-Sent Events on /live, and GET /metrics in the Prometheus text
// format. Operators authenticate with approver certificates over mTLS
// (the TLS configuration admits spiffe://TD/approver/** only); the user of
// a request is that SPIFFE identity, recorded on every triage.
//
// A Server is safe for concurrent use; Notify may be called from any
// goroutine.
package web
