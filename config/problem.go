package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalid matches (errors.Is) every error Load and Parse return for a
// configuration that cannot be used; such errors are Problems.
var ErrInvalid = errors.New("invalid configuration")

// Severity says whether a Problem stops the configuration from being used.
type Severity int

const (
	// SeverityError (the zero value): the configuration cannot be used.
	SeverityError Severity = iota
	// SeverityWarning: a risky but valid choice; the configuration is used.
	SeverityWarning
)

// Problem is one thing wrong with a configuration file.
type Problem struct {
	File string // as given to Load or Parse
	Line int    // 1-based; 0 when the problem is with the file as a whole
	Path string // field path such as devices[0].vendor.ports[1]; may be ""
	Msg  string // what is wrong and what to do
	// Severity is SeverityError for every Problem in the error returned
	// by Load and Parse, SeverityWarning for Config.Warnings.
	Severity Severity
}

// String formats the problem as FILE:LINE: path: message, or
// FILE:LINE: path: warning: message for a warning.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	if p.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one file, ordered by line. It is the
// error type returned by Load and Parse.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Is reports ErrInvalid.
func (ps Problems) Is(target error) bool { return target == ErrInvalid }

func (ps Problems) sorted() Problems {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	return ps
}
