// Command wardgate is the gateway agent and its operator tools. It only
// parses flags, loads configuration, wires components and runs them; the
// work is done by the gateway, certs, hal and config packages.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit statuses (docs/architecture.md): 0 success, 1 runtime failure, 2 usage or
// configuration error.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// env is what a command may touch of the outside world; tests replace it.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// cliCommand is one subcommand. run returns the exit status.
type cliCommand struct {
	name    string
	summary string
	run     func(e *env, args []string) int
}

// commands lists only what works in this build.
var commands = map[string]cliCommand{}

func register(c cliCommand) { commands[c.name] = c }

func main() {
	os.Exit(run(&env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:]))
}

func run(e *env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(e.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "wardgate: unknown command %q\n\n", args[0])
		usage(e.stderr)
		return exitUsage
	}
	return c.run(e, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "wardgate: the only way in to legacy medical devices.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: wardgate COMMAND [flags]   (wardgate COMMAND --help for details)")
	fmt.Fprintln(w)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s %s\n", n, commands[n].summary)
	}
}

// newFlags returns a FlagSet that prints its usage with the command's
// synopsis and reports errors instead of exiting.
func newFlags(e *env, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(strings.Fields(synopsis)[0], flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: wardgate %s\n\n%s\n", synopsis, about)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(out, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses args; it returns the exit status to use and false when the
// command must stop (help asked for, or bad flags).
func parse(e *env, fs *flag.FlagSet, args []string) (int, bool) {
	fs.SetOutput(e.stderr)
	usage := fs.Usage
	fs.Usage = func() {} // printed below, to the right stream
	err := fs.Parse(args)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(e.stdout)
		fs.Usage()
		return exitOK, false
	}
	if err != nil {
		fs.Usage()
		return exitUsage, false
	}
	return exitOK, true
}

// parseAll parses flags that may come before, between or after positional
// arguments (wardgate grant approve ID --json) and returns the positional
// ones.
func parseAll(e *env, fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var pos []string
	for {
		if code, ok := parse(e, fs, args); !ok {
			return nil, code, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, exitOK, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
