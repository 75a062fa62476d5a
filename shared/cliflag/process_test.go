package cliflag_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/cliflag"
)

// TestProcessSignals: a SIGHUP arrives on Hangups and leaves the process
// running; a SIGTERM ends the context.
func TestProcessSignals(t *testing.T) {
	c := flagContext(t, cliflag.LogFlags())
	ctx, proc, err := cliflag.StartProcess(c)
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Stop()
	hup := proc.Hangups()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hup:
	case <-time.After(5 * time.Second):
		t.Fatal("no SIGHUP on Hangups")
	}
	if ctx.Err() != nil {
		t.Fatal("SIGHUP ended the context")
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM did not end the context")
	}
}
