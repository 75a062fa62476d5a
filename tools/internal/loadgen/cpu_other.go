//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package loadgen

import "time"

// processCPU is the CPU time this process has used so far; ok is false where
// it cannot be read, as here.
func processCPU() (d time.Duration, ok bool) { return 0, false }
