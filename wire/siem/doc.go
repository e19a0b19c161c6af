// Package siem turns verified telemetry lines (wire.Line, one per message
// plus the alert lines verify_failed, gap, topic_mismatch and
// body_invalid) into the formats security teams feed their SIEM with, and
// delivers them.
//
// Formats (Encoder): json (the JSON line unchanged), syslog (RFC 5424 with
// the private SD-ID wardgate@32473 and a meta sequenceId), cef (ArcSight
// CEF:0 with one stable class id per event kind) and leef (QRadar LEEF 2.0,
// tab delimited). Every encoded record is one line without a line break;
// Fields is the one place that decides which values a line carries, so the
// formats never disagree. Severity and the class ids are tables in this
// package and documented in docs/siem.md.
//
// Sinks: WriterSink (one record per line on an io.Writer, such as stdout),
// SyslogSink (RFC 5424 over TCP or TLS with RFC 6587 octet counting) and
// Webhook (signed JSON POSTs for vendor requests, alarms and findings).
// The network sinks commit every record to a bbolt Queue before they try
// to deliver it and delete it only after delivery; they reconnect or
// retry with a capped backoff on an injected clock. The queue is bounded:
// when full, the oldest bulk record (metrics, status) is dropped first and
// counted.
//
// The package imports wire and its subpackages only, never gateway or
// central. Encoder, Queue and the sinks are safe for concurrent use; a
// sink's Run must be called once.
package siem
