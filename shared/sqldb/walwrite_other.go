//go:build !(linux && (amd64 || arm64 || loong64 || ppc64le || riscv64 || s390x))

package sqldb

// gatherWALWrites: SQLite writes its WAL as it does by itself here
// (walwrite_linux.go).
func gatherWALWrites() bool { return false }
