package eventually_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/eventually"
)

func TestNoError(t *testing.T) {
	var n atomic.Int64
	eventually.NoError(t, 5*time.Second, func() error {
		if got := n.Add(1); got < 3 {
			return fmt.Errorf("check %d", got)
		}
		return nil
	})
	if got := n.Load(); got != 3 {
		t.Errorf("check ran %d times, want 3", got)
	}
}

// fatalTB records a Fatalf instead of ending the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f) // like runtime.Goexit: nothing after Fatalf runs
}

// TestNoErrorTimesOut: the failure carries the last error, not the first.
func TestNoErrorTimesOut(t *testing.T) {
	f := &fatalTB{TB: t}
	var n atomic.Int64
	func() {
		defer func() {
			if r := recover(); r != nil && r != f {
				panic(r)
			}
		}()
		eventually.NoError(f, 20*time.Millisecond, func() error {
			if n.Add(1) == 1 {
				return errors.New("first")
			}
			return errors.New("still nothing")
		})
	}()
	if want := "timed out after 20ms: still nothing"; f.msg != want {
		t.Errorf("failed with %q, want %q", f.msg, want)
	}
}
