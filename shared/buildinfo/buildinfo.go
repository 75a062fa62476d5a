// Package buildinfo reports the version of the running binary.
package buildinfo

import (
	"runtime/debug"
)

// Release is natter's release version; services register it with micro.
const Release = "0.1.0"

// Version is Release plus the VCS revision the binary was built from, when
// the build recorded one.
func Version() string {
	if rev := Revision(); rev != "" {
		return Release + "+" + rev
	}
	return Release
}

// Revision is the VCS revision the binary was built from (12 hex digits,
// "-dirty" with uncommitted changes), "" when the build did not record one
// (go build -buildvcs=false, a build outside a repository).
func Revision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return ""
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
