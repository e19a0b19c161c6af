package main

import "fmt"

func init() {
	register(cliCommand{name: "clock", summary: "reset the trusted-time mark after the clock ran ahead", run: cmdClock})
}

const clockAbout = `Subcommands (over the admin socket):
  reset   set the trusted-time mark to the clock now. Use it only when the
          clock once ran ahead (the clock_behind alarm stays although NTP
          shows the right time); you are recorded as the actor.`

func cmdClock(e *env, args []string) int {
	fs := newFlags(e, "clock reset", clockAbout)
	resolve := socketFlags(fs)
	pos, code, ok := parseAll(e, fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] != "reset" {
		fs.Usage()
		return exitUsage
	}
	if code := call(e, resolve, "POST", "/v1/clock/reset", nil, nil); code != exitOK {
		return code
	}
	fmt.Fprintln(e.stdout, "trusted time reset to the clock; vendor access and central commands follow the clock again")
	return exitOK
}
