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
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Release
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
		return Release
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return Release + "+" + rev
}
