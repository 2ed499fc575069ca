package refresh

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

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
