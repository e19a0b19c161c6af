package main

import (
	"fmt"

	"github.com/wardgate/wardgate/gateway/release"
)

func init() {
	register(cliCommand{name: "sbom", summary: "print the CycloneDX SBOM of this binary's modules", run: cmdSBOM})
}

const sbomAbout = `Prints a CycloneDX 1.5 JSON SBOM of this binary: the wardgate module and
every Go module linked into it, from the build information the binary
carries. The output is the same for the same build; its SHA-256 is sent in
birth and inventory telemetry (sbom_sha256) so central knows what each
gateway runs.`

func cmdSBOM(e *env, args []string) int {
	fs := newFlags(e, "sbom", sbomAbout)
	if code, ok := parse(e, fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	b, err := release.SelfSBOM()
	if err != nil {
		fmt.Fprintln(e.stderr, "wardgate sbom:", err)
		return exitFailure
	}
	e.stdout.Write(b)
	return exitOK
}
