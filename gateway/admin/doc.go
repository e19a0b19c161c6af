// Package admin is the agent's local admin API: HTTP with JSON bodies over a
// UNIX socket (mode 0660), used by `wardgate status`, `grant`, `lock` and
// `hal`. The kernel tells the server who is calling (SO_PEERCRED); handlers
// read that uid with PeerUID and record it as the actor of every change.
//
// Server is safe for concurrent use; Run owns its goroutines and returns
// after they exit. Client is safe for concurrent use.
package admin
