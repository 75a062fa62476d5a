package cliflag_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/natter-chat/natter/shared/cliflag"
	"github.com/natter-chat/natter/shared/dbflag"
)

// runApp runs an app with the shared flags (and extra ones) on args, its
// Action being only HandlePrintConfig; it returns what the app wrote.
func runApp(t *testing.T, extra []cli.Flag, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	flags := cliflag.NATSFlags()
	flags = append(flags, dbflag.Flags("data/natter.db")...)
	flags = append(flags, cliflag.LogFlags()...)
	flags = append(flags, cliflag.PrintConfigFlag())
	flags = append(flags, extra...)
	acted := false
	app := &cli.App{
		Name:    "natter-test",
		Version: "v1.2.3",
		Flags:   flags,
		Writer:  &out,
		Action: func(c *cli.Context) error {
			if done, err := cliflag.HandlePrintConfig(c); done {
				return err
			}
			acted = true
			return nil
		},
	}
	err := app.Run(append([]string{"natter-test"}, args...))
	if acted && slices.Contains(args, "--print-config") {
		t.Error("the Action went on after --print-config")
	}
	return out.String(), err
}

// TestPrintConfig prints every flag with its effective value, from the
// command line, the environment or the default, sorted, with the secrets
// redacted and secret files never read.
func TestPrintConfig(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "nats-password")
	if err := os.WriteFile(pwFile, []byte("filesecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NATTER_NATS_PASSWORD_FILE", pwFile)
	t.Setenv("NATTER_LOG_LEVEL", "debug")
	extra := []cli.Flag{
		&cli.StringFlag{Name: "admin-password", EnvVars: []string{"NATTER_ADMIN_PASSWORD"}},
		&cli.StringSliceFlag{Name: "peers", EnvVars: []string{"NATTER_PEERS"}},
	}
	out, err := runApp(t, extra, "--print-config",
		"--mysql-dsn", "natter:dsnsecret@tcp(db:3306)/natter?parseTime=true",
		"--nats", "nats://svc:urlsecret@n1:4222,nats://n2:4222",
		"--nats-user", "svc",
		"--admin-password", "flagsecret",
		"--peers", "a", "--peers", "b",
		"--http", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"filesecret", "dsnsecret", "urlsecret", "flagsecret"} {
		if strings.Contains(out, secret) {
			t.Errorf("%s printed:\n%s", secret, out)
		}
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	names := make([]string, len(lines))
	for i, l := range lines {
		names[i], _, _ = strings.Cut(l, "=")
	}
	if !slices.IsSorted(names) {
		t.Errorf("not sorted by name:\n%s", out)
	}
	for _, want := range []string{
		"mysql-dsn=natter:***@tcp(db:3306)/natter?parseTime=true",
		"mysql-dsn-file=",
		"nats=nats://svc:***@n1:4222,nats://n2:4222",
		"nats-user=svc",
		"nats-password-file=" + pwFile,
		"admin-password=***",
		"peers=a,b",
		"http=:8080",
		"log-level=debug",
		"log-format=text",
		"sqlite=data/natter.db",
		"db-conns=16",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("no line %q in:\n%s", want, out)
		}
	}
	for _, l := range lines {
		name, _, _ := strings.Cut(l, "=")
		if name == "help" || name == "version" || name == cliflag.PrintConfigName {
			t.Errorf("printed %q", l)
		}
	}

	// A token in the NATS URL (nats://TOKEN@host), from the environment
	// or the command line, with a scheme or without.
	t.Setenv("NATTER_NATS", "nats://envtokensecret@n1:4222")
	out, err = runApp(t, nil, "--print-config")
	if err != nil || strings.Contains(out, "envtokensecret") || !strings.Contains(out, "\nnats=nats://***@n1:4222\n") {
		t.Errorf("a token URL from the environment: %v\n%s", err, out)
	}
	out, err = runApp(t, nil, "--print-config", "--nats", "flagtokensecret@n1:4222,nats://n2:4222")
	if err != nil || strings.Contains(out, "flagtokensecret") || !strings.Contains(out, "\nnats=***@n1:4222,nats://n2:4222\n") {
		t.Errorf("a token URL without a scheme: %v\n%s", err, out)
	}

	// Without the flag the Action goes on and nothing is printed.
	if out, err := runApp(t, nil); err != nil || out != "" {
		t.Errorf("without --print-config: %q, %v", out, err)
	}
}

func TestRedactDSN(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"user:pw@tcp(host:3306)/db", "user:***@tcp(host:3306)/db"},
		{"user:p@ss:w/rd@tcp(host:3306)/db?x=y", "user:***@tcp(host:3306)/db?x=y"},
		{"user@tcp(host:3306)/db", "user@tcp(host:3306)/db"},
		{"tcp(host:3306)/db", "tcp(host:3306)/db"},
		{"/db", "/db"},
		{"user:pw@/db", "user:***@/db"},
	} {
		if got := cliflag.RedactDSN(c.in); got != c.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
