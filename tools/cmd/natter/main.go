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
	app := &cli.App{
		Name:     "natter",
		Usage:    "a cluster chat system on NATS",
		Version:  buildinfo.Version(),
		Commands: []*cli.Command{serveCommand(), chatCommand(), benchCommand()},
		// --send chat:2:hello, world is one command, not two.
		DisableSliceFlagSeparator: true,
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "natter:", err)
		os.Exit(1)
	}
}
