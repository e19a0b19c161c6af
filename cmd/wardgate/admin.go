package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/admin"
)

// defaultConfig is where the package installs the configuration.
const defaultConfig = "/etc/wardgate/wardgate.yaml"

// socketFlags adds --config and --socket to fs and returns a function that
// resolves the admin socket path from them. With --config only
// gateway.admin_socket and gateway.state_dir are read (config.AdminSocket),
// so a typo elsewhere in the file does not lock the operator out of a
// running agent.
func socketFlags(fs *flag.FlagSet) func() (string, error) {
	cfgPath := fs.String("config", "", "agent configuration `FILE` (its gateway.admin_socket is used; default "+defaultConfig+")")
	sock := fs.String("socket", "", "admin socket `PATH` (overrides --config)")
	return func() (string, error) {
		if *sock != "" {
			return *sock, nil
		}
		p := *cfgPath
		if p == "" {
			if _, err := os.Stat(defaultConfig); err != nil {
				return "", errors.New("no admin socket given: pass --config FILE or --socket PATH")
			}
			p = defaultConfig
		}
		sock, err := config.AdminSocket(p)
		if err != nil {
			return "", fmt.Errorf("cannot find the admin socket in the configuration:\n%w\npass --socket PATH to name the socket directly", err)
		}
		return sock, nil
	}
}

// call runs one admin request and prints a failure the way an operator
// needs it; it returns the exit status.
func call(e *env, resolve func() (string, error), method, path string, body, out any) int {
	sock, err := resolve()
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate:", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin.NewClient(sock).Do(ctx, method, path, body, out); err != nil {
		if errors.Is(err, admin.ErrNoAgent) {
			fmt.Fprintf(e.stderr, "wardgate: cannot reach the agent: nothing listens on the admin socket %s; start the agent with `wardgate run --config FILE`, or pass --socket PATH if it listens elsewhere\n", sock)
			return exitFailure
		}
		fmt.Fprintln(e.stderr, "wardgate:", err)
		var api *admin.APIError
		if errors.As(err, &api) && api.Status >= 400 && api.Status < 500 {
			return exitUsage
		}
		return exitFailure
	}
	return exitOK
}

func printJSON(e *env, raw json.RawMessage) {
	var v any
	if json.Unmarshal(raw, &v) == nil {
		b, _ := json.MarshalIndent(v, "", "  ")
		raw = b
	}
	fmt.Fprintln(e.stdout, string(raw))
}

func table(e *env, header string, rows [][]string) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	if d >= 0 {
		return "in " + d.String()
	}
	return (-d).String() + " ago"
}
