package eventually_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natter-chat/natter/shared/eventually"
)

func TestTrue(t *testing.T) {
	var n atomic.Int64
	eventually.True(t, 5*time.Second, func() bool { return n.Add(1) >= 3 }, "the third check")
	if got := n.Load(); got != 3 {
		t.Errorf("cond checked %d times, want 3", got)
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

func TestTrueTimesOut(t *testing.T) {
	f := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != f {
				panic(r)
			}
		}()
		eventually.True(f, 20*time.Millisecond, func() bool { return false }, "nothing")
	}()
	if want := "timed out after 20ms waiting for nothing"; f.msg != want {
		t.Errorf("failed with %q, want %q", f.msg, want)
	}
}
