// Package demo owns the demo data set behind `dashboard demo`: a `demo`
// schema (orders of a small shop, support tickets, deploys and room sensor
// readings) seeded with a day of plausible history, two public dashboards
// that use every panel kind, and a traffic generator that keeps writing so
// that screens move. It does not serve, query panels or watch tables beyond
// asking dashboard.watch for its own; the server does the rest as for any
// other schema.
//
// Setup is idempotent: it creates what is missing, fills only the gap since
// the data was last written (so a demo restarted after a weekend looks alive
// at once) and applies its dashboard files (dashboards/*.yaml). Traffic keeps the
// tables bounded by deleting old rows, so the demo can run for days.
package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/provision"
)

// Retention of each table: Traffic deletes older rows, and Setup seeds no
// further back than this (sensors) or a day (the rest).
const (
	sensorRetention = 2 * time.Hour
	orderRetention  = 26 * time.Hour // "revenue today" needs up to 24 h
	ticketRetention = 24 * time.Hour // closed tickets only; open ones stay
	deployRetention = 72 * time.Hour
	seedWindow      = 24 * time.Hour
	seedMinGap      = time.Minute // a smaller gap since the last write is left alone
	sensorSeedStep  = 15 * time.Second
	seedTicketEvery = 5 * time.Minute  // mean
	seedDeployEvery = 20 * time.Minute // mean
	setupLockKey    = "dashboard.demo.setup"
	fixedSeed1      = 20240611
	fixedSeed2      = 1
)

// schemaSQL creates the demo tables. Every statement is idempotent.
const schemaSQL = `
CREATE SCHEMA IF NOT EXISTS demo;
COMMENT ON SCHEMA demo IS 'Demo data for dashboard demo: a small shop, its support queue, deploys and room sensors.';

CREATE TABLE IF NOT EXISTS demo.orders (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    customer   text NOT NULL,
    region     text NOT NULL,
    product    text NOT NULL,
    quantity   int NOT NULL DEFAULT 1 CHECK (quantity > 0),
    amount     numeric(12, 2) NOT NULL CHECK (amount >= 0),
    status     text NOT NULL DEFAULT 'pending'
               CHECK (status IN ('pending', 'paid', 'shipped', 'refunded', 'failed'))
);
CREATE INDEX IF NOT EXISTS orders_created_at_idx ON demo.orders (created_at);
CREATE INDEX IF NOT EXISTS orders_unfulfilled_idx ON demo.orders (created_at) WHERE status IN ('pending', 'paid');
COMMENT ON TABLE demo.orders IS 'Demo shop orders; pending for a few seconds, then paid, then shipped.';

CREATE TABLE IF NOT EXISTS demo.tickets (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    opened_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz NULL,
    priority  text NOT NULL CHECK (priority IN ('urgent', 'high', 'normal', 'low')),
    subject   text NOT NULL,
    customer  text NOT NULL,
    CHECK (closed_at >= opened_at)
);
CREATE INDEX IF NOT EXISTS tickets_opened_at_idx ON demo.tickets (opened_at);
CREATE INDEX IF NOT EXISTS tickets_closed_at_idx ON demo.tickets (closed_at);
CREATE INDEX IF NOT EXISTS tickets_open_idx ON demo.tickets (priority) WHERE closed_at IS NULL;
COMMENT ON TABLE demo.tickets IS 'Demo support tickets; closed_at is NULL while open.';

CREATE TABLE IF NOT EXISTS demo.deploys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service     text NOT NULL,
    version     text NOT NULL,
    environment text NOT NULL,
    deployed_at timestamptz NOT NULL DEFAULT now(),
    status      text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'failed', 'rolled back')),
    author      text NOT NULL
);
CREATE INDEX IF NOT EXISTS deploys_deployed_at_idx ON demo.deploys (deployed_at);
COMMENT ON TABLE demo.deploys IS 'Demo deploys; deployed_at is when the deploy started.';

CREATE TABLE IF NOT EXISTS demo.sensor_readings (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sensor      text NOT NULL,
    reading_at  timestamptz NOT NULL DEFAULT now(),
    temperature numeric(5, 2) NOT NULL,
    humidity    numeric(5, 2) NOT NULL CHECK (humidity BETWEEN 0 AND 100)
);
CREATE INDEX IF NOT EXISTS sensor_readings_reading_at_idx ON demo.sensor_readings (reading_at);
COMMENT ON TABLE demo.sensor_readings IS 'Demo room sensors: temperature in °C, relative humidity in %.';

CREATE TABLE IF NOT EXISTS demo.seed_state (
    table_name   text PRIMARY KEY,
    seeded_until timestamptz NOT NULL
);
COMMENT ON TABLE demo.seed_state IS 'How far Setup has seeded each demo table, so that a re-run only fills the gap.';
`

// watched are the demo tables; Setup watches them so that the demo is live
// even before the server has looked at the panels.
var watched = []string{"demo.orders", "demo.tickets", "demo.deploys", "demo.sensor_readings"}

// Setup creates the demo schema, its tables with realistic data, and the
// demo dashboards and panels in the dashboard schema. It runs in one
// transaction under an advisory lock, so replicas may call it together. It
// is idempotent: a re-run adds only the history missing since the data was
// last written, and applies the dashboard files, which writes nothing when
// the rows already match them. The dashboard schema must already be migrated.
func Setup(ctx context.Context, pool *pgxpool.Pool) error {
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", setupLockKey); err != nil {
			return fmt.Errorf("locking demo setup: %w", err)
		}
		if _, err := tx.Exec(ctx, schemaSQL); err != nil {
			return fmt.Errorf("creating demo schema: %w", err)
		}
		for _, t := range watched {
			if _, err := tx.Exec(ctx, "SELECT dashboard.watch($1::regclass)", t); err != nil {
				return fmt.Errorf("watching %s: %w", t, err)
			}
		}
		return seed(ctx, tx)
	})
	if err != nil {
		return err
	}
	set, err := Dashboards()
	if err != nil {
		return err
	}
	// Applied like any folder of dashboard files: one transaction under
	// the apply lock, and nothing written when the rows already match.
	if _, err := provision.Apply(ctx, pool, set, provision.ApplyOptions{}); err != nil {
		return fmt.Errorf("applying the demo dashboards: %w", err)
	}
	return nil
}

// seed fills each table from where its data ends (or its seed window
// starts) up to now, with a fixed random seed.
func seed(ctx context.Context, tx pgx.Tx) error {
	var now time.Time
	if err := tx.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
		return fmt.Errorf("seeding demo data: %w", err)
	}
	r := rand.New(rand.NewPCG(fixedSeed1, fixedSeed2))
	steps := []struct {
		table  string
		column string
		window time.Duration
		fill   func(ctx context.Context, tx pgx.Tx, r *rand.Rand, from, now time.Time, full bool) error
	}{
		{"demo.orders", "created_at", seedWindow, seedOrders},
		{"demo.tickets", "opened_at", seedWindow, seedTickets},
		{"demo.deploys", "deployed_at", seedWindow, seedDeploys},
		{"demo.sensor_readings", "reading_at", sensorRetention, seedSensors},
	}
	for _, s := range steps {
		var seeded, newest pgtype.Timestamptz
		err := tx.QueryRow(ctx, `SELECT (SELECT seeded_until FROM demo.seed_state WHERE table_name = $1),
			(SELECT max(`+s.column+`) FROM `+s.table+`)`, s.table).Scan(&seeded, &newest)
		if err != nil {
			return fmt.Errorf("seeding %s: %w", s.table, err)
		}
		from := now.Add(-s.window)
		full := true
		for _, t := range []pgtype.Timestamptz{seeded, newest} {
			if t.Valid && t.Time.After(from) {
				from, full = t.Time, false
			}
		}
		if now.Sub(from) < seedMinGap {
			continue
		}
		if err := s.fill(ctx, tx, r, from, now, full); err != nil {
			return fmt.Errorf("seeding %s: %w", s.table, err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO demo.seed_state (table_name, seeded_until) VALUES ($1, $2)
			ON CONFLICT (table_name) DO UPDATE SET seeded_until = EXCLUDED.seeded_until`, s.table, now)
		if err != nil {
			return fmt.Errorf("seeding %s: %w", s.table, err)
		}
	}
	return nil
}

func seedOrders(ctx context.Context, tx pgx.Tx, r *rand.Rand, from, now time.Time, _ bool) error {
	var orders []order
	for t := from; ; {
		t = t.Add(time.Duration(r.ExpFloat64() / orderRate(t) * float64(time.Second)))
		if t.After(now) {
			break
		}
		o := newOrder(r)
		o.At = t
		o.Status = seededOrderStatus(r, now.Sub(t))
		orders = append(orders, o)
	}
	return insertOrders(ctx, tx, orders, true)
}

func seedTickets(ctx context.Context, tx pgx.Tx, r *rand.Rand, from, now time.Time, _ bool) error {
	var tickets []ticket
	for t := from; ; {
		t = t.Add(time.Duration(r.ExpFloat64() * float64(seedTicketEvery)))
		if t.After(now) {
			break
		}
		tk, open := newTicket(r, t)
		if closed := t.Add(open); !closed.After(now) {
			tk.Closed = closed
		}
		tickets = append(tickets, tk)
	}
	return insertTickets(ctx, tx, tickets, true)
}

func seedDeploys(ctx context.Context, tx pgx.Tx, r *rand.Rand, from, now time.Time, full bool) error {
	var deploys []deploy
	failed := false
	for t := from; ; {
		t = t.Add(time.Duration(r.ExpFloat64() * float64(seedDeployEvery)))
		if t.After(now) {
			break
		}
		d := newDeploy(r, t)
		if now.Sub(t) > deployRunning {
			d.Status = deployOutcome(r)
		}
		failed = failed || d.Status == "failed"
		deploys = append(deploys, d)
	}
	// A fresh demo shows at least one failure in its failed-deploys table.
	if full && !failed && len(deploys) > 2 {
		deploys[len(deploys)/2].Status = "failed"
	}
	return insertDeploys(ctx, tx, deploys)
}

func seedSensors(ctx context.Context, tx pgx.Tx, r *rand.Rand, from, now time.Time, _ bool) error {
	var readings []reading
	for t := from.Truncate(sensorSeedStep).Add(sensorSeedStep); !t.After(now); t = t.Add(sensorSeedStep) {
		for _, s := range sensors {
			readings = append(readings, s.read(r, t))
		}
	}
	return insertReadings(ctx, tx, readings, true)
}

// querier is what the insert helpers need from a transaction or pool.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// stamp is the value of a time column: the row's own time, or now() to let
// the database stamp it.
func stamp(column string, withTime bool) string {
	if withTime {
		return "u." + column
	}
	return "now()"
}

// insertOrdersSQL writes the orders given by orderArgs in one statement;
// withTime false stamps them with now().
func insertOrdersSQL(withTime bool) string {
	return `INSERT INTO demo.orders (created_at, customer, region, product, quantity, amount, status)
		SELECT ` + stamp("created_at", withTime) + `, u.customer, u.region, u.product, u.quantity, u.cents / 100.0, u.status
		FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::text[])
		     AS u (created_at, customer, region, product, quantity, cents, status)`
}

func orderArgs(orders []order) []any {
	n := len(orders)
	at := make([]time.Time, n)
	customer, region, product, status := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	qty := make([]int32, n)
	cents := make([]int64, n)
	for i, o := range orders {
		at[i], customer[i], region[i], product[i], status[i] = o.At, o.Customer, o.Region, o.Product, o.Status
		qty[i], cents[i] = o.Quantity, o.Cents
	}
	return []any{at, customer, region, product, qty, cents, status}
}

func insertOrders(ctx context.Context, q querier, orders []order, withTime bool) error {
	if len(orders) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, insertOrdersSQL(withTime), orderArgs(orders)...)
	return err
}

func insertTicketsSQL(withTime bool) string {
	return `INSERT INTO demo.tickets (opened_at, closed_at, priority, subject, customer)
		SELECT ` + stamp("opened_at", withTime) + `, u.closed_at, u.priority, u.subject, u.customer
		FROM unnest($1::timestamptz[], $2::timestamptz[], $3::text[], $4::text[], $5::text[])
		     AS u (opened_at, closed_at, priority, subject, customer)`
}

func ticketArgs(tickets []ticket) []any {
	n := len(tickets)
	opened := make([]time.Time, n)
	closed := make([]pgtype.Timestamptz, n)
	priority, subject, customer := make([]string, n), make([]string, n), make([]string, n)
	for i, t := range tickets {
		opened[i], priority[i], subject[i], customer[i] = t.Opened, t.Priority, t.Subject, t.Customer
		closed[i] = pgtype.Timestamptz{Time: t.Closed, Valid: !t.Closed.IsZero()}
	}
	return []any{opened, closed, priority, subject, customer}
}

func insertTickets(ctx context.Context, q querier, tickets []ticket, withTime bool) error {
	if len(tickets) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, insertTicketsSQL(withTime), ticketArgs(tickets)...)
	return err
}

func insertDeploys(ctx context.Context, q querier, deploys []deploy) error {
	if len(deploys) == 0 {
		return nil
	}
	n := len(deploys)
	at := make([]time.Time, n)
	service, version, env, status, author := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, d := range deploys {
		at[i], service[i], version[i], env[i], status[i], author[i] = d.At, d.Service, d.Version, d.Environment, d.Status, d.Author
	}
	_, err := q.Exec(ctx, `INSERT INTO demo.deploys (deployed_at, service, version, environment, status, author)
		SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])`,
		at, service, version, env, status, author)
	return err
}

func insertReadingsSQL(withTime bool) string {
	return `INSERT INTO demo.sensor_readings (reading_at, sensor, temperature, humidity)
		SELECT ` + stamp("reading_at", withTime) + `, u.sensor, u.temperature, u.humidity
		FROM unnest($1::timestamptz[], $2::text[], $3::float8[], $4::float8[])
		     AS u (reading_at, sensor, temperature, humidity)`
}

func readingArgs(readings []reading) []any {
	n := len(readings)
	at := make([]time.Time, n)
	sensor := make([]string, n)
	temp, hum := make([]float64, n), make([]float64, n)
	for i, rd := range readings {
		at[i], sensor[i], temp[i], hum[i] = rd.At, rd.Sensor, rd.Temperature, rd.Humidity
	}
	return []any{at, sensor, temp, hum}
}

func insertReadings(ctx context.Context, q querier, readings []reading, withTime bool) error {
	if len(readings) == 0 {
		return nil
	}
	_, err := q.Exec(ctx, insertReadingsSQL(withTime), readingArgs(readings)...)
	return err
}
