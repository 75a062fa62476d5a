// Package archdoc holds docs/ARCHITECTURE.md against the tree: its tests
// fail when a directory holding a Go package is missing from the code map,
// or when the code map names a path that no longer exists.
package archdoc
