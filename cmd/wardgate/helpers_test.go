package main

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return fmt.Sprintf("go build: %v\n%s", e.err, e.out) }

func osMkdirTemp() (string, error) {
	d, err := os.MkdirTemp("", "wardgate-bin-")
	binDir = d
	return d, err
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}
