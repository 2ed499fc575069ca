package pgtest

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

// SmallDisk mounts a tmpfs of mib MiB for the test and returns its folder, so
// that a test can run PostgreSQL on a disk it then fills for real (see Fill).
// Mounting needs root (CAP_SYS_ADMIN): without it the test is skipped, or
// fails when CI is set, because CI must run every fault test. The folder is
// unmounted and removed when the test ends.
func SmallDisk(t testing.TB, mib int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgtest-disk-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV,
		fmt.Sprintf("size=%dm,mode=0755", mib)); err != nil {
		os.Remove(dir)
		if os.Getenv("CI") == "" {
			t.Skipf("pgtest: cannot mount a small disk (%v); run as root or set CI to make this a failure", err)
		}
		t.Fatalf("pgtest: mounting a %d MiB tmpfs on %s: %v", mib, dir, err)
	}
	t.Cleanup(func() {
		// Detach: a PostgreSQL the test could not stop must not keep the
		// mount, or the folder, alive.
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("pgtest: unmounting %s: %v", dir, err)
			return
		}
		os.Remove(dir)
	})
	return dir
}

// Fill writes the file path until its disk is full; removing the file gives
// the space back.
func Fill(t testing.TB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		_, err := f.Write(buf)
		if errors.Is(err, syscall.ENOSPC) {
			return
		}
		if err != nil {
			t.Fatalf("pgtest: filling %s: %v", path, err)
		}
	}
}
