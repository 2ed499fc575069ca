package pgserver_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/pgserver"
	"github.com/livedash/dashboard/internal/pgtest"
)

// On a full disk, Start fails with PostgreSQL's own reason and leaves no
// half-initialized folder behind: once there is space again, the next Start
// initializes the folder and serves.
func TestStartOnFullDisk(t *testing.T) {
	disk := pgtest.SmallDisk(t, 64)
	ballast := filepath.Join(disk, "ballast")
	pgtest.Fill(t, ballast)
	opts := pgserver.Options{Dir: filepath.Join(disk, "pg")}

	if s, err := pgserver.Start(t.Context(), opts); err == nil {
		s.Stop(context.Background())
		t.Fatal("Start on a full disk: got no error")
	} else if !strings.Contains(err.Error(), "No space left on device") {
		t.Fatalf("Start on a full disk: got %v, want PostgreSQL's \"No space left on device\"", err)
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	s, err := pgserver.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("Start with space again: %v", err)
	}
	defer s.Stop(context.Background())
	conn, err := pgx.Connect(t.Context(), s.ConnString("postgres"))
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close(context.Background())
	var one int
	if err := conn.QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1: got %d, %v", one, err)
	}
}
