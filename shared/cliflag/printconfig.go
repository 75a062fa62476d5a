package cliflag

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/natsconn"
)

// PrintConfigName is the --print-config flag's name.
const PrintConfigName = "print-config"

// PrintConfigFlag asks the binary to print its effective configuration and
// exit (see HandlePrintConfig).
func PrintConfigFlag() cli.Flag {
	return &cli.BoolFlag{Name: PrintConfigName, EnvVars: []string{"NATTER_PRINT_CONFIG"},
		Usage: "print the effective configuration (flags and environment, secrets redacted) and exit"}
}

// HandlePrintConfig prints the configuration to the app's writer if
// --print-config is set, and then reports done: the Action returns err
// without doing anything else. Call it first in an Action.
func HandlePrintConfig(c *cli.Context) (done bool, err error) {
	if !c.Bool(PrintConfigName) {
		return false, nil
	}
	w := io.Writer(c.App.Writer)
	if w == nil {
		return true, fmt.Errorf("--%s: the app has no writer", PrintConfigName)
	}
	return true, PrintConfig(c, w)
}

// PrintConfig writes every flag of c's command and its parents with its
// effective value (default, environment or command line), one name=value a
// line, sorted by name. Secrets are redacted: the password of a DSN or a
// URL becomes ***, so does a URL's token (nats://TOKEN@host), a flag named
// like a password, secret or token shows *** when set; files holding secrets (--nats-password-file, --nats-creds,
// --nats-nkey-file, --mysql-dsn-file) are never read, only their paths
// printed.
func PrintConfig(c *cli.Context, w io.Writer) error {
	values := map[string]string{}
	for _, ctx := range c.Lineage() {
		var flags []cli.Flag
		switch {
		case ctx.Command != nil:
			flags = ctx.Command.Flags
		case ctx.App != nil:
			flags = ctx.App.Flags
		}
		for _, f := range flags {
			names := f.Names()
			if len(names) == 0 {
				continue
			}
			name := names[0]
			if _, seen := values[name]; seen || skipPrint(name) {
				continue
			}
			values[name] = redact(name, flagValue(ctx.Value(name)))
		}
	}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := fmt.Fprintf(w, "%s=%s\n", n, values[n]); err != nil {
			return fmt.Errorf("print config: %w", err)
		}
	}
	return nil
}

// skipPrint leaves out the flags that are actions, not configuration.
func skipPrint(name string) bool {
	switch name {
	case "help", "version", PrintConfigName:
		return true
	}
	return false
}

// flagValue formats a flag's value as the command line would take it.
func flagValue(v any) string {
	join := func(vs any) string { return strings.Trim(strings.Join(strings.Fields(fmt.Sprint(vs)), ","), "[]") }
	switch v := v.(type) {
	case nil:
		return ""
	case cli.StringSlice:
		return strings.Join(v.Value(), ",")
	case *cli.StringSlice:
		return strings.Join(v.Value(), ",")
	case cli.IntSlice:
		return join(v.Value())
	case cli.Int64Slice:
		return join(v.Value())
	case cli.Float64Slice:
		return join(v.Value())
	case cli.UintSlice:
		return join(v.Value())
	}
	return fmt.Sprint(v)
}

// redact hides the secrets a flag's value may hold.
func redact(name, value string) string {
	if value == "" {
		return value
	}
	lname := strings.ToLower(name)
	switch {
	case strings.HasSuffix(lname, "-file"), strings.HasSuffix(lname, "-path"):
		return value // a path; the secret is in the file
	case strings.Contains(lname, "dsn"):
		return RedactDSN(value)
	case strings.Contains(lname, "password"), strings.Contains(lname, "secret"),
		strings.Contains(lname, "token"), strings.Contains(lname, "seed"):
		return "***"
	case name == NATS, strings.Contains(value, "://"):
		return natsconn.RedactURLs(value)
	}
	return value
}

// RedactDSN replaces the password of a go-sql-driver/mysql DSN
// (user:password@tcp(host:port)/db?params) with ***. It splits the DSN the
// way the driver does: the password runs from the first colon to the last
// @ before the last slash.
func RedactDSN(dsn string) string {
	slash := strings.LastIndexByte(dsn, '/')
	if slash < 0 {
		slash = len(dsn)
	}
	at := strings.LastIndexByte(dsn[:slash], '@')
	if at < 0 {
		return dsn // no credentials
	}
	colon := strings.IndexByte(dsn[:at], ':')
	if colon < 0 {
		return dsn // a user without a password
	}
	return dsn[:colon+1] + "***" + dsn[at:]
}
