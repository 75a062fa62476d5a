//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package chatclient

import "golang.org/x/sys/unix"

// EchoControl returns a function that turns the echo of the terminal on fd
// on and off, and whether fd is a terminal at all.
func EchoControl(fd int) (set func(on bool), isTerminal bool) {
	orig, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
	if err != nil {
		return func(bool) {}, false
	}
	return func(on bool) {
		t := *orig
		if !on {
			t.Lflag &^= unix.ECHO
		}
		unix.IoctlSetTermios(fd, ioctlSetTermios, &t)
	}, true
}
