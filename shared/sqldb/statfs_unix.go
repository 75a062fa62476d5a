//go:build unix

package sqldb

import (
	"fmt"
	"path/filepath"
	"syscall"
)

// freeBytes returns the bytes an unprivileged writer may still use on the
// filesystem that holds path.
func freeBytes(path string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", filepath.Dir(path), err)
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
