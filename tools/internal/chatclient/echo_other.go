//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package chatclient

// EchoControl cannot turn a terminal's echo off on this system: passwords
// are better given through NATTER_PASSWORD or --password-file here.
func EchoControl(fd int) (set func(on bool), isTerminal bool) {
	return func(bool) {}, false
}
