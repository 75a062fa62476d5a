//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package loadgen

import "syscall"

// openFileLimit returns this process's limit of open files (soft, hard);
// ok is false where it cannot be read.
func openFileLimit() (soft, hard uint64, ok bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, 0, false
	}
	return uint64(l.Cur), uint64(l.Max), true
}
