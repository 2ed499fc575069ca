package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/listen"
	"github.com/livedash/dashboard/internal/pgtest"
)

// TestFeedSlotsCommand sets the slot count with `dashboard feed slots N`:
// status shows more than four servers, a shrink below a held slot is
// refused with who holds it, a grow keeps the new slots from servers until
// the transactions open at the grow have ended, and bad counts and roles
// that do not own the schema get clear errors.
func TestFeedSlotsCommand(t *testing.T) {
	url := pgtest.NewDB(t)
	t.Setenv("DATABASE_URL", url)
	t.Setenv("DASHBOARD_ADDR", "127.0.0.1:8080")
	t.Setenv("DASHBOARD_FEED", "")
	ctx := context.Background()

	if out := runOK(t, "feed", "slots"); out != "feed slots: 4 (0 held by servers)\n" {
		t.Errorf("feed slots on a new database: printed %q, want 4 and none held", out)
	}
	for _, args := range [][]string{{"0"}, {"257"}, {"-1"}, {"eight"}, {"4", "5"}} {
		err := run(ctx, append([]string{"feed", "slots"}, args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "from 1 to 256") {
			t.Errorf("feed slots %s: got %v, want an error naming 1 to 256", strings.Join(args, " "), err)
		}
	}

	out := runOK(t, "feed", "slots", "8")
	for _, re := range []string{
		`(?m)^feed slots are now 8 \(were 4\): up to 8 servers can watch this database$`,
		`tries 8 advisory locks`,
		`8 per watched table it changes`,
		`max_locks_per_transaction \(\d+\) x \(max_connections \(\d+\) \+ max_prepared_transactions \(\d+\)\) = \d+`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("feed slots 8: output does not match %s:\n%s", re, out)
		}
	}
	if out := runOK(t, "feed", "slots", "8"); out != "feed slots are already 8\n" {
		t.Errorf("feed slots 8 again: printed %q", out)
	}

	// Six servers, in slots 0 to 5.
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cc.RuntimeParams["application_name"] = "dashboard feed locks"
	var servers []*pgx.Conn
	for slot := range 6 {
		c, err := pgx.ConnectConfig(ctx, cc)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "SELECT pg_advisory_lock(dashboard.slot_key($1))", slot); err != nil {
			t.Fatal(err)
		}
		servers = append(servers, c)
	}
	if out := runOK(t, "status"); !regexp.MustCompile(`(?m)^servers: 6 of 8 feed slots held$`).MatchString(out) {
		t.Errorf("status with six servers: got\n%s\nwant 'servers: 6 of 8 feed slots held'", out)
	}
	var st listen.Status
	if err := json.Unmarshal([]byte(runOK(t, "status", "--json")), &st); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	if st.FeedSlots != 8 || len(st.Servers) != 6 || st.Servers[5].Slot != 5 || uint32(st.Servers[5].PID) != servers[5].PgConn().PID() {
		t.Errorf("status --json: got %d slots, servers %+v; want 8 slots, six servers, slot 5 pid %d", st.FeedSlots, st.Servers, servers[5].PgConn().PID())
	}

	// Slots 4 and 5 are held: shrinking to 4 is refused, naming them.
	err = run(ctx, []string{"feed", "slots", "4"}, io.Discard, io.Discard)
	for _, want := range []string{"cannot shrink from 8 to 4", fmt.Sprintf("slot 4 (pid %d", servers[4].PgConn().PID()),
		fmt.Sprintf("slot 5 (pid %d", servers[5].PgConn().PID()), "Stop those servers"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("feed slots 4 while slots 4 and 5 are held: got %v, want it to say %q", err, want)
		}
	}
	if out := runOK(t, "feed", "slots"); out != "feed slots: 8 (6 held by servers)\n" {
		t.Errorf("feed slots after the refused shrink: printed %q", out)
	}
	if out := runOK(t, "feed", "slots", "6"); !strings.Contains(out, "now 6 (were 8)") {
		t.Errorf("feed slots 6 with slots 0 to 5 held: printed %q", out)
	}

	// A writer that skipped its notice is open across a grow: the command
	// holds the new slots until it ends.
	writer, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(ctx)
	if _, err := writer.Exec(ctx, "CREATE TABLE w (id int); SELECT dashboard.watch('w'); BEGIN; INSERT INTO w VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"feed", "slots", "16"}, &buf, io.Discard) }()
	observer, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer observer.Close(ctx)
	newSlotsHeld := `SELECT count(*)::int FROM pg_locks l, generate_series(6, 15) s
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND ((l.classid::bigint << 32) | l.objid::bigint) = dashboard.slot_key(s)`
	deadline := time.Now().Add(30 * time.Second)
	for {
		var held, slots int
		if err := observer.QueryRow(ctx, "SELECT ("+newSlotsHeld+"), dashboard.feed_slots()").Scan(&held, &slots); err != nil {
			t.Fatal(err)
		}
		if held == 10 && slots == 16 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("feed slots 16 returned (%v) while a writer open at the grow is still open; printed %q", err, buf.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the grow to 16 with its new slots held did not happen: %d held, %d slots", held, slots)
		}
		time.Sleep(10 * time.Millisecond) // polling pg_locks, not hoping
	}
	var claimed bool
	if err := observer.QueryRow(ctx, "SELECT pg_try_advisory_lock(dashboard.slot_key(6))").Scan(&claimed); err != nil || claimed {
		t.Errorf("claiming new slot 6 while a writer open at the grow is still open: got %v, %v, want false", claimed, err)
	}
	if _, err := writer.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("feed slots 16: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("feed slots 16 did not return after the open writer committed")
	}
	// (Transactions of other tests on the same cluster may make it give up
	// waiting; the writer, ended, is not among them.)
	named := regexp.MustCompile(fmt.Sprintf(`\(pids [^)]*\b%d\b`, writer.PgConn().PID()))
	if out := buf.String(); !strings.Contains(out, "now 16 (were 6)") || named.MatchString(out) {
		t.Errorf("feed slots 16: printed %q", out)
	}
	var held int
	if err := observer.QueryRow(ctx, newSlotsHeld).Scan(&held); err != nil || held != 0 {
		t.Errorf("new slots held after the command returned: got %d, %v, want 0", held, err)
	}
	if err := observer.QueryRow(ctx, "SELECT pg_try_advisory_lock(dashboard.slot_key(6))").Scan(&claimed); err != nil || !claimed {
		t.Errorf("claiming new slot 6 after the command: got %v, %v, want true", claimed, err)
	}

	// Only the schema's owner may set the count.
	role := fmt.Sprintf("dash_slots_%d", time.Now().UnixNano())
	if _, err := writer.Exec(ctx, "CREATE ROLE "+role+" LOGIN; GRANT USAGE ON SCHEMA dashboard TO "+role+
		"; GRANT SELECT ON ALL TABLES IN SCHEMA dashboard TO "+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = writer.Exec(ctx, "DROP OWNED BY "+role+"; DROP ROLE "+role) })
	t.Setenv("DATABASE_URL", url+" user="+role)
	err = run(ctx, []string{"feed", "slots", "32"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "does not own schema dashboard") || !strings.Contains(err.Error(), "the role that ran the migrations") {
		t.Errorf("feed slots 32 by %s: got %v, want an error naming the owner of schema dashboard", role, err)
	}
}
