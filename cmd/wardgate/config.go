package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/wardgate/wardgate/config"
)

func init() {
	register(cliCommand{name: "config", summary: "check a configuration file, or print a complete example", run: cmdConfig})
}

const configAbout = `Subcommands:
  check FILE   validate FILE; print every problem as FILE:LINE: path: message
               and every risky but valid choice as FILE:LINE: path: warning: message.
               Exit 0 when valid (even with warnings), 2 when not. FILE may be /dev/stdin.
  example      print a complete, commented example configuration.`

func cmdConfig(e *env, args []string) int {
	fs := newFlags(e, "config check FILE | config example", configAbout)
	rest, code, ok := parseAll(e, fs, args)
	if !ok {
		return code
	}
	if len(rest) == 0 {
		fs.Usage()
		return exitUsage
	}
	switch rest[0] {
	case "check":
		return cmdConfigCheck(e, rest[1:])
	case "example":
		sub := newFlags(e, "config example", "Prints a complete, commented example configuration that passes `wardgate config check`.")
		if code, ok := parse(e, sub, rest[1:]); !ok {
			return code
		}
		fmt.Fprint(e.stdout, config.Example)
		return exitOK
	default:
		fmt.Fprintf(e.stderr, "wardgate config: unknown subcommand %q\n", rest[0])
		fs.Usage()
		return exitUsage
	}
}

func cmdConfigCheck(e *env, args []string) int {
	fs := newFlags(e, "config check FILE", "Validates FILE and prints every problem as FILE:LINE: path: message,\nand every risky but valid choice as FILE:LINE: path: warning: message.\nExit 0 when valid (even with warnings), 2 when not.")
	if code, ok := parse(e, fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	file := fs.Arg(0)
	cfg, err := config.Load(file, time.Now())
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				fmt.Fprintln(e.stderr, p)
			}
			fmt.Fprintf(e.stderr, "%s: %d problem(s); nothing was changed\n", file, len(ps))
		} else {
			fmt.Fprintf(e.stderr, "%s: %v\n", file, err)
		}
		return exitUsage
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(e.stderr, w)
	}
	fmt.Fprintf(e.stdout, "%s: valid (gateway %s, %d device(s), %d vendor(s), %d warning(s))\n", file, cfg.Gateway.ID, len(cfg.Devices), len(cfg.Vendors), len(cfg.Warnings))
	return exitOK
}
