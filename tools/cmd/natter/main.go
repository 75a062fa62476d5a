// Command natter is natter's all-in-one binary: `natter serve` runs the
// whole system in one process, `natter chat` is the terminal client and
// `natter bench` the load generator and delivery checker.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/buildinfo"
)

func main() {
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "natter:", err)
		os.Exit(1)
	}
}

// newApp is the natter command line; natter --version prints the build's
// version.
func newApp() *cli.App {
	return &cli.App{
		Name:     "natter",
		Usage:    "a cluster chat system on NATS",
		Version:  buildinfo.Version(),
		Commands: []*cli.Command{serveCommand(), chatCommand(), benchCommand()},
		// --send chat:2:hello, world is one command, not two.
		DisableSliceFlagSeparator: true,
	}
}
