//go:build !linux

package pgtest

import "testing"

// SmallDisk needs Linux's tmpfs; elsewhere the test is skipped.
func SmallDisk(t testing.TB, mib int) string {
	t.Helper()
	t.Skip("pgtest: a small disk needs a Linux tmpfs")
	return ""
}

// Fill is not reached: SmallDisk skips the test first.
func Fill(t testing.TB, path string) {
	t.Helper()
	t.Fatal("pgtest: Fill needs SmallDisk")
}
