// Package migrations owns the dashboard schema: the embedded SQL files that
// create it and Up, which applies them. It does not run queries at runtime.
//
// Files are named NNNN_name.sql (four-digit version, lower-case name) and run
// in version order, each in its own transaction together with its row in
// dashboard.schema_migrations. A file must not contain transaction control or
// statements that cannot run inside a transaction block.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed *.sql
var files embed.FS

// lockKey is the pg_advisory_lock key that serialises Up across servers
// sharing a database. Its bytes spell "dashboar", so it is recognisable in
// pg_locks (classid 0x64617368, objid 0x626f6172).
const lockKey int64 = 0x64617368626f6172

// fileName is the required form of a migration file name.
var fileName = regexp.MustCompile(`^([0-9]{4})_([a-z0-9][a-z0-9_]*)\.sql$`)

// bootstrap creates the table Up reads before any file has run.
const bootstrap = `
CREATE SCHEMA IF NOT EXISTS dashboard;
CREATE TABLE IF NOT EXISTS dashboard.schema_migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);`

type migration struct {
	version int
	name    string // the part between version and extension
	file    string
	sql     string
}

// Up applies every embedded migration not yet recorded in
// dashboard.schema_migrations, in order, each in its own transaction. It holds
// a session-level advisory lock (key 0x64617368626f6172) on conn meanwhile, so several
// servers can start together: the others wait, then find nothing to do.
// Up returns the versions it applied; after an error, those applied before
// the failing file stay applied.
func Up(ctx context.Context, conn *pgx.Conn) (applied []int, err error) {
	return up(ctx, conn, files)
}

// Pending returns the versions of the embedded migrations that the database
// has not recorded yet, in order.
func Pending(ctx context.Context, conn *pgx.Conn) ([]int, error) {
	ms, err := load(files)
	if err != nil {
		return nil, err
	}
	done, err := appliedVersions(ctx, conn)
	if err != nil {
		return nil, err
	}
	var pending []int
	for _, m := range ms {
		if !done[m.version] {
			pending = append(pending, m.version)
		}
	}
	return pending, nil
}

func up(ctx context.Context, conn *pgx.Conn, fsys fs.FS) (applied []int, err error) {
	ms, err := load(fsys)
	if err != nil {
		return nil, err
	}

	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return nil, fmt.Errorf("acquiring migration lock: %w", err)
	}
	defer func() {
		if conn.IsClosed() {
			return // the session and with it the lock are gone
		}
		// Release even when ctx is done; otherwise the lock outlives Up.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", lockKey); uerr != nil {
			err = errors.Join(err, fmt.Errorf("releasing migration lock: %w", uerr))
		}
	}()

	exists, err := migrationsTableExists(ctx, conn)
	if err != nil {
		return nil, err
	}
	if !exists {
		// Only create when missing: CREATE SCHEMA IF NOT EXISTS would still
		// demand the CREATE privilege on the database.
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, bootstrap)
			return err
		}); err != nil {
			return nil, fmt.Errorf("creating dashboard.schema_migrations: %w", err)
		}
	}

	done, err := appliedVersions(ctx, conn)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if done[m.version] {
			continue
		}
		if err := apply(ctx, conn, m); err != nil {
			return applied, err
		}
		applied = append(applied, m.version)
	}
	return applied, nil
}

// apply runs one migration and records it, in one transaction.
func apply(ctx context.Context, conn *pgx.Conn, m migration) error {
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// No arguments: pgx uses the simple protocol, which allows several
		// statements in one string.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return withLine(m.sql, err)
		}
		if conn.PgConn().TxStatus() != 'T' {
			return errors.New("file ends the transaction it runs in; remove BEGIN/COMMIT/ROLLBACK")
		}
		_, err := tx.Exec(ctx,
			"INSERT INTO dashboard.schema_migrations (version, name) VALUES ($1, $2)",
			m.version, m.name)
		return err
	})
	if err != nil {
		return fmt.Errorf("applying migration %s: %w", m.file, err)
	}
	return nil
}

// withLine adds the line of the failing statement to a server error, since
// its position counts characters from the start of the whole file.
func withLine(sql string, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Position <= 0 {
		return err
	}
	runes := []rune(sql)
	pos := min(int(pgErr.Position)-1, len(runes))
	line := 1 + strings.Count(string(runes[:pos]), "\n")
	return fmt.Errorf("line %d: %w", line, err)
}

func migrationsTableExists(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var exists bool
	err := conn.QueryRow(ctx,
		"SELECT to_regclass('dashboard.schema_migrations') IS NOT NULL").Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("looking for dashboard.schema_migrations: %w", err)
	}
	return exists, nil
}

// appliedVersions reads dashboard.schema_migrations; a database without that
// table has applied nothing. Versions the binary does not know (applied by a
// newer release) are returned too and simply never match a file.
func appliedVersions(ctx context.Context, conn *pgx.Conn) (map[int]bool, error) {
	exists, err := migrationsTableExists(ctx, conn)
	if err != nil || !exists {
		return map[int]bool{}, err
	}
	rows, err := conn.Query(ctx, "SELECT version FROM dashboard.schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("reading dashboard.schema_migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("reading dashboard.schema_migrations: %w", err)
	}
	done := make(map[int]bool, len(versions))
	for _, v := range versions {
		done[v] = true
	}
	return done, nil
}

// load reads and validates every .sql file at the root of fsys, sorted by
// version. Other files and directories are ignored.
func load(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("listing migrations: %w", err)
	}
	var ms []migration
	byVersion := make(map[int]string)
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		match := fileName.FindStringSubmatch(e.Name())
		if match == nil {
			return nil, fmt.Errorf("migration %s: name does not match NNNN_name.sql (lower-case letters, digits, underscores)", e.Name())
		}
		version, _ := strconv.Atoi(match[1]) // four digits by the pattern
		if version == 0 {
			return nil, fmt.Errorf("migration %s: version 0000 is reserved; start at 0001", e.Name())
		}
		if other, ok := byVersion[version]; ok {
			return nil, fmt.Errorf("migrations %s and %s: duplicate version %d", other, e.Name(), version)
		}
		byVersion[version] = e.Name()
		sql, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", e.Name(), err)
		}
		if strings.TrimSpace(string(sql)) == "" {
			return nil, fmt.Errorf("migration %s: file is empty", e.Name())
		}
		ms = append(ms, migration{version: version, name: match[2], file: e.Name(), sql: string(sql)})
	}
	if len(ms) == 0 {
		return nil, errors.New("no migrations found")
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	return ms, nil
}
