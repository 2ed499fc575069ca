package refresh

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestWalEnd: an insert position just past a page header is the end of
// the WAL before that page; any other is its own end.
func TestWalEnd(t *testing.T) {
	const page, seg = 8192, 16 << 20
	for _, tt := range []struct {
		in, want string
		seg      uint64
	}{
		{"0/1516800", "0/1516800", seg}, // inside a page
		{"0/3000058", "0/3000058", seg}, // inside a segment's first page
		{"0/3000028", "0/3000000", seg}, // past the long header: an XLOG_SWITCH ended the segment before
		{"1/28", "1/0", seg},            // the same, at 4 GiB
		{"0/3002018", "0/3002000", seg}, // past a short header: a record filled the page before
		{"16/B374E018", "16/B374E000", seg},
		{"0/3002028", "0/3002028", seg},   // 40 into a page that is not a segment's first: inside it
		{"0/3002010", "0/3002010", seg},   // not a header's end
		{"0/300028", "0/300000", 1 << 20}, // another segment size
		{"0/328", "0/328", 1 << 20},
	} {
		in, err := pglogrepl.ParseLSN(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := walEnd(in, page, tt.seg).String(); got != tt.want {
			t.Errorf("walEnd(%s, %d, %d): got %s, want %s", tt.in, page, tt.seg, got, tt.want)
		}
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
