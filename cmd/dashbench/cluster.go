package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/config"
)

// cluster is the PostgreSQL of -pgbench and -bulk: the bench's own
// connection (which watches and unwatches) and a reader role that the
// started servers connect as. The reader may read, not install triggers,
// as the README recommends; so the server cannot watch a table again
// behind the bench's back when it reloads its catalog.
type cluster struct {
	db        *database
	conn      *pgx.Conn
	feed      string // the triggers' and the servers' feed mode
	fsync     bool
	walLevel  string
	reader    string // role name; "" until created
	readerURL string
	viewer    *sseViewer // of the running cell, if any
}

func openCluster(ctx context.Context, o options, dataDir string, fsync bool) (*cluster, error) {
	db, err := openDatabase(ctx, o.databaseURL, dataDir, fsync, false)
	if err != nil {
		return nil, err
	}
	c := &cluster{db: db, feed: o.feed}
	if c.conn, err = pgx.Connect(ctx, db.connString); err != nil {
		db.close()
		return nil, fmt.Errorf("connecting to database: %w", err)
	}
	var fs string
	if err := c.conn.QueryRow(ctx, `SELECT current_setting('fsync'), current_setting('wal_level')`).Scan(&fs, &c.walLevel); err != nil {
		c.close()
		return nil, fmt.Errorf("reading settings: %w", err)
	}
	c.fsync = fs == "on"
	if err := migrate(ctx, c.conn); err != nil {
		c.close()
		return nil, err
	}
	if err := setFeedMode(ctx, c.conn, c.feed); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *cluster) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if c.reader != "" {
		c.conn.Exec(ctx, "DROP OWNED BY "+c.reader+"; DROP ROLE "+c.reader)
	}
	c.conn.Close(ctx)
	c.db.close()
}

// createReader creates the reader role: usage of the dashboard schema and
// read access to its tables, plus grants, each a statement with %s for the
// role's name.
func (c *cluster) createReader(ctx context.Context, grants ...string) error {
	var b [12]byte
	rand.Read(b[:])
	name := fmt.Sprintf("dashbench_reader_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	pw := hex.EncodeToString(b[:])
	if _, err := c.conn.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", name, pw)); err != nil {
		return fmt.Errorf("creating the server's reader role (the bench needs CREATEROLE): %w", err)
	}
	c.reader = name
	stmts := []string{
		"GRANT USAGE ON SCHEMA dashboard TO %s",
		"GRANT SELECT ON ALL TABLES IN SCHEMA dashboard TO %s",
	}
	if c.feed == "logical" {
		// The logical feed opens a replication connection.
		stmts = append(stmts, "ALTER ROLE %s REPLICATION")
	}
	stmts = append(stmts, grants...)
	for _, s := range stmts {
		if _, err := c.conn.Exec(ctx, fmt.Sprintf(s, name)); err != nil {
			return fmt.Errorf("granting to the reader role: %w", err)
		}
	}
	var err error
	c.readerURL, err = withUser(c.db.connString, name, pw)
	return err
}

// withUser returns connString with its user and password replaced, in
// either form (URL or keyword/value; in the latter the last keyword wins).
func withUser(connString, user, password string) (string, error) {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return "", fmt.Errorf("database URL: %w", err)
		}
		u.User = url.UserPassword(user, password)
		return u.String(), nil
	}
	return connString + " user=" + user + " password=" + password, nil
}

// startCellServer starts a server as the reader role and, for viewerAll,
// opens one SSE viewer of dashboard slug. stop ends both.
func (c *cluster) startCellServer(ctx context.Context, o options, slug, viewers string, stderr io.Writer) (base string, stop func(), err error) {
	env := []string{"DASHBOARD_MIGRATE=false", "DASHBOARD_LOG_LEVEL=error", "DASHBOARD_FEED=" + c.feed}
	if o.maxHzSet {
		env = append(env, "DASHBOARD_MAX_REFRESH_HZ="+strconv.FormatFloat(o.maxHz, 'g', -1, 64))
	}
	p, err := startServer(ctx, o.serverBin, c.readerURL, env, stderr)
	if err != nil {
		return "", nil, err
	}
	if viewers == viewerAll {
		if c.viewer, err = openViewer(ctx, p.url, slug); err != nil {
			p.stop()
			return "", nil, err
		}
	}
	return p.url, func() {
		if c.viewer != nil {
			c.viewer.stop()
			c.viewer = nil
		}
		p.stop()
	}, nil
}

// prepareVariant watches or unwatches tables, checks that the triggers
// are what the variant says and that the server wants news of them
// exactly when a viewer is open, then checkpoints.
func (c *cluster) prepareVariant(ctx context.Context, tables []string, watched bool, viewers string) error {
	if err := setWatched(ctx, c.conn, tables, watched); err != nil {
		return err
	}
	if c.feed == "logical" {
		if err := waitStreaming(ctx, c.conn); err != nil {
			return err
		}
	}
	if watched {
		if err := waitArmed(ctx, c.conn, tables, viewers == viewerAll); err != nil {
			return err
		}
	}
	if c.viewer != nil {
		if err := c.viewer.alive(); err != nil {
			return err
		}
	}
	if _, err := c.conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// setWatched installs or removes the change triggers on tables and checks
// the result: gated triggers (the notify feed) or none.
func setWatched(ctx context.Context, conn *pgx.Conn, tables []string, watched bool) error {
	fn, want := "unwatch", ""
	if watched {
		fn, want = "watch", "gated"
	}
	for _, t := range tables {
		if _, err := conn.Exec(ctx, "SELECT dashboard."+fn+"($1::regclass)", t); err != nil {
			return fmt.Errorf("%s %s: %w", fn, t, err)
		}
	}
	rows, err := conn.Query(ctx, `SELECT t, coalesce(dashboard.trigger_mode(t::regclass), '') FROM unnest($1::text[]) AS t`, tables)
	if err != nil {
		return fmt.Errorf("reading trigger modes: %w", err)
	}
	var bad []string
	var t, mode string
	_, err = pgx.ForEachRow(rows, []any{&t, &mode}, func() error {
		if mode != want {
			bad = append(bad, fmt.Sprintf("%s is %q", t, mode))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading trigger modes: %w", err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("after dashboard.%s, want trigger mode %q: %s", fn, want, strings.Join(bad, ", "))
	}
	return nil
}

// armedCount returns how many of tables some server holds the feed key of
// (migrations/0005_gated_notify.sql): a writer to those notifies.
func armedCount(ctx context.Context, conn *pgx.Conn, tables []string) (int, error) {
	var n int
	err := conn.QueryRow(ctx, `
		SELECT count(*) FROM unnest($1::text[]) AS t(name)
		WHERE EXISTS (
			SELECT FROM pg_locks l, generate_series(0, dashboard.feed_slots() - 1) AS s
			WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock' AND l.objsubid = 1
			  AND ((l.classid::bigint << 32) | l.objid::bigint) = dashboard.feed_key(s, t.name::regclass))`, tables).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("reading feed locks: %w", err)
	}
	return n, nil
}

// waitArmed waits until the server wants news of every table (want) or of
// none: a cell with a viewer must measure notifying writers, one without
// must not.
func waitArmed(ctx context.Context, conn *pgx.Conn, tables []string, want bool) error {
	goal := 0
	if want {
		goal = len(tables)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, err := armedCount(ctx, conn, tables)
		if err != nil {
			return err
		}
		if n == goal {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server holds the feed keys of %d of %d tables after 15s, want %d: the viewer case would not be what it says", n, len(tables), goal)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// setFeedMode switches the database's triggers to feed (dashboard feed).
func setFeedMode(ctx context.Context, conn *pgx.Conn, feed string) error {
	if _, err := conn.Exec(ctx, "SELECT dashboard.set_feed_mode($1)", feed); err != nil {
		return fmt.Errorf("switching the triggers to the %s feed: %w", feed, err)
	}
	return nil
}

// waitStreaming waits until a server's logical feed streams from its
// slot, so that a cell measures writers with the walsender decoding.
func waitStreaming(ctx context.Context, conn *pgx.Conn) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots
			WHERE active AND starts_with(slot_name, 'dashboard_feed_') AND database = current_database()`).Scan(&n)
		if err != nil {
			return fmt.Errorf("reading replication slots: %w", err)
		}
		if n > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("no logical feed streams after 15s: the cell would not measure what it says")
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// sseViewer holds one dashboard's event stream open and throws the frames
// away: while it is open, the server wants news of the tables its panels
// read.
type sseViewer struct {
	cancel context.CancelFunc
	done   chan struct{}
	ended  atomic.Pointer[error]
}

func openViewer(ctx context.Context, base, slug string) (*sseViewer, error) {
	vctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(vctx, "GET", base+"/d/"+slug+"/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("opening a viewer of %s: %w", slug, err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("opening a viewer of %s: status %s", slug, resp.Status)
	}
	v := &sseViewer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(v.done)
		defer resp.Body.Close()
		_, err := io.Copy(io.Discard, resp.Body)
		if vctx.Err() == nil {
			if err == nil {
				err = io.EOF
			}
			err = fmt.Errorf("the viewer's stream of %s ended: %w", slug, err)
			v.ended.Store(&err)
		}
	}()
	return v, nil
}

func (v *sseViewer) alive() error {
	if p := v.ended.Load(); p != nil {
		return *p
	}
	return nil
}

func (v *sseViewer) stop() {
	v.cancel()
	<-v.done
}

// serverHz is the refresh cap of the servers -pgbench and -bulk start: -max-hz
// when given, else the server's default.
func serverHz(o options) float64 {
	if o.maxHzSet {
		return o.maxHz
	}
	f, _ := reflect.TypeFor[config.Config]().FieldByName("MaxRefreshHz")
	hz, err := strconv.ParseFloat(f.Tag.Get("default"), 64)
	if err != nil {
		return 0 // unknown; the report says so
	}
	return hz
}

// parseInts reads "8,32".
func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%q is not a list of positive numbers", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// parseOnOff reads "off,on".
func parseOnOff(s string) ([]bool, error) {
	var out []bool
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "on":
			out = append(out, true)
		case "off":
			out = append(out, false)
		default:
			return nil, fmt.Errorf("%q: want on, off or off,on", s)
		}
	}
	return out, nil
}

// parseViewers reads "none,all".
func parseViewers(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		switch f = strings.TrimSpace(f); f {
		case viewerNone, viewerAll:
			out = append(out, f)
		default:
			return nil, fmt.Errorf("%q: want none, all or none,all", s)
		}
	}
	return out, nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// joinIdents joins already-qualified table names for a GRANT.
func joinIdents(tables []string) string { return strings.Join(tables, ", ") }
