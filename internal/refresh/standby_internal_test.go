package refresh

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestParseLSN(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want lsn
		ok   bool
	}{
		{"0/0", 0, true},
		{"0/3000058", 0x3000058, true},
		{"16/B374D848", 0x16_B374D848, true},
		{"FFFFFFFF/FFFFFFFF", 0xFFFFFFFF_FFFFFFFF, true},
		{"", 0, false},
		{"3000058", 0, false},
		{"1/2/3", 0, false},
		{"x/1", 0, false},
		{"100000000/0", 0, false}, // each half is 32 bits
	} {
		got, err := parseLSN(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseLSN(%q): got %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && got.String() != tt.in {
			t.Errorf("lsn(%q).String(): got %s", tt.in, got)
		}
	}
	if a, b := lsn(0x1_00000000), lsn(0xFFFFFFFF); a <= b {
		t.Errorf("1/0 must be after 0/FFFFFFFF")
	}
}

// TestStandbyFailure: which failures on a standby send the query to the
// primary, and which are the query's own.
func TestStandbyFailure(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("running: %w", &pgconn.PgError{Code: code}) }
	for _, tt := range []struct {
		err  error
		want string
	}{
		{pg("40001"), fallbackConflict}, // canceling statement due to conflict with recovery
		{pg("40P01"), fallbackConflict}, // buffer-pin deadlock with the startup process
		{pg("57P04"), fallbackConflict}, // terminating connection: database dropped
		{pg("55000"), fallbackRecovery}, // recovery is in progress
		{pg("08006"), fallbackDown},
		{pg("57P01"), fallbackDown}, // standby shutting down
		{pg("42P01"), ""},           // the query's own: undefined table
		{pg("57014"), ""},           // statement timeout: the query's own
		{errNoRows, ""},
		{errStandbyLag, fallbackLag},
		{fmt.Errorf("verifying: %w", errStandbyPromoted), fallbackPromoted},
		{context.Canceled, ""},
		{errors.New("dial unix /x/.s.PGSQL.5432: connect: no such file or directory"), fallbackDown},
	} {
		if got := standbyFailure(tt.err); got != tt.want {
			t.Errorf("standbyFailure(%v): got %q, want %q", tt.err, got, tt.want)
		}
	}
}
