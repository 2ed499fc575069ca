// Package demo owns the demo data set behind `dashboard demo`: a `demo`
// schema (orders of a small shop, support tickets, deploys and room sensor
// readings) seeded with a day of history written as the traffic generator
// would have written it at its rate, two public dashboards
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
	"maps"
	"math/big"
	"math/rand/v2"
	"slices"
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
	seedMinWindow   = 2 * time.Hour // the least history of orders and tickets, see seedPlan
	seedMaxWrites   = 1_000_000     // the most rate-driven writes a seed replays
	seedMinGap      = time.Minute   // a smaller gap since the last write is left alone
	seedStillRate   = 1             // the rate history is seeded at when no traffic follows
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
//
// rate is the rate Traffic will run at: the history is what Traffic at that
// rate would have written (see seedPlan), so that the panels show no jump
// when live traffic takes over. With rate 0 nothing will move, and the
// history is seeded as for seedStillRate.
func Setup(ctx context.Context, pool *pgxpool.Pool, rate float64) error {
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
		return seed(ctx, tx, rate)
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

// seedPlan is the rate and window of the seeded rate-driven writes (orders
// and tickets) for Traffic at rate: Traffic's mean rate over a day, or,
// when that would be more than seedMaxWrites, over a shorter window (at
// least seedMinWindow, so the hourly panels compare like with like), and
// past that a lower rate. Up to 86 writes per second the seeded history
// meets the live traffic without a jump.
func seedPlan(rate float64) (perSecond float64, window time.Duration) {
	if !(rate > 0) {
		rate = seedStillRate
	}
	perSecond = meanRate(rate)
	window = seedWindow
	if perSecond*window.Seconds() > seedMaxWrites {
		window = max(time.Duration(seedMaxWrites/perSecond*float64(time.Second)), seedMinWindow).Truncate(time.Minute)
		perSecond = min(perSecond, seedMaxWrites/window.Seconds())
	}
	return perSecond, window
}

// gap is the time span a table's seed fills: from its data's end (or its
// window's start) to now.
type gap struct {
	from time.Time
	full bool // the table had no data in its window
	due  bool // the gap is worth filling
}

// seed fills each table from where its data ends (or its seed window
// starts) up to now, as Traffic at rate would have written it, with a
// fixed random seed.
func seed(ctx context.Context, tx pgx.Tx, rate float64) error {
	var now time.Time
	if err := tx.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
		return fmt.Errorf("seeding demo data: %w", err)
	}
	r := rand.New(rand.NewPCG(fixedSeed1, fixedSeed2))
	perSecond, window := seedPlan(rate)
	tables := []struct {
		table, column string
		window        time.Duration
		gap           gap
	}{
		{"demo.orders", "created_at", window, gap{}},
		{"demo.tickets", "opened_at", window, gap{}},
		{"demo.deploys", "deployed_at", seedWindow, gap{}},
		{"demo.sensor_readings", "reading_at", sensorRetention, gap{}},
	}
	for i, s := range tables {
		var seeded, newest pgtype.Timestamptz
		err := tx.QueryRow(ctx, `SELECT (SELECT seeded_until FROM demo.seed_state WHERE table_name = $1),
			(SELECT max(`+s.column+`) FROM `+s.table+`)`, s.table).Scan(&seeded, &newest)
		if err != nil {
			return fmt.Errorf("seeding %s: %w", s.table, err)
		}
		g := gap{from: now.Add(-s.window), full: true}
		for _, t := range []pgtype.Timestamptz{seeded, newest} {
			if t.Valid && t.Time.After(g.from) {
				g.from, g.full = t.Time, false
			}
		}
		g.due = now.Sub(g.from) >= seedMinGap
		tables[i].gap = g
	}
	orders, tickets, deploys, sensors := tables[0].gap, tables[1].gap, tables[2].gap, tables[3].gap
	if err := seedWrites(ctx, tx, r, perSecond, orders, tickets, now); err != nil {
		return fmt.Errorf("seeding demo orders and tickets: %w", err)
	}
	if err := seedDeploys(ctx, tx, r, deploys, now); err != nil {
		return fmt.Errorf("seeding demo.deploys: %w", err)
	}
	if err := seedSensors(ctx, tx, r, sensors, now); err != nil {
		return fmt.Errorf("seeding demo.sensor_readings: %w", err)
	}
	for _, s := range tables {
		if !s.gap.due {
			continue
		}
		_, err := tx.Exec(ctx, `INSERT INTO demo.seed_state (table_name, seeded_until) VALUES ($1, $2)
			ON CONFLICT (table_name) DO UPDATE SET seeded_until = EXCLUDED.seeded_until`, s.table, now)
		if err != nil {
			return fmt.Errorf("seeding %s: %w", s.table, err)
		}
	}
	return nil
}

// openTicket is a ticket open at some point of the replay: one the replay
// opened (index into its new tickets) or one already in the table (id).
type openTicket struct {
	index    int // -1 for a ticket already in the table
	id       int64
	priority int
}

// seedWrites replays the rate-driven writes of Traffic from the earlier of
// the two gaps to now, perSecond on average with Traffic's bursts: new
// orders, refunds (as the status of seeded orders), tickets opened, closed
// and escalated with the same steering towards targetOpen open tickets.
// Only the writes inside each table's own gap are kept; tickets left open
// by an earlier run take part like any other.
func seedWrites(ctx context.Context, tx pgx.Tx, r *rand.Rand, perSecond float64, orders, tickets gap, now time.Time) error {
	if !orders.due && !tickets.due {
		return nil
	}
	start := now
	for _, g := range []gap{orders, tickets} {
		if g.due && g.from.Before(start) {
			start = g.from
		}
	}
	// The steady rate whose mean with bursts is perSecond.
	rate := perSecond / meanRate(1)

	var open []openTicket
	if tickets.due {
		rows, err := tx.Query(ctx, "SELECT id, priority FROM demo.tickets WHERE closed_at IS NULL ORDER BY id")
		if err != nil {
			return err
		}
		existing, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
			ID       int64
			Priority string
		}])
		if err != nil {
			return err
		}
		for _, t := range existing {
			open = append(open, openTicket{index: -1, id: t.ID, priority: max(slices.Index(priorities, t.Priority), 0)})
		}
	}
	var newOrders []order
	var newTickets []ticket
	changed := map[int64]ticket{} // tickets of an earlier run closed or escalated, by id

	t := start
	nextBurst := t.Add(between(r, burstEveryMin, burstEveryMax))
	var burstUntil time.Time
	for t.Before(now) {
		end, cur := nextBurst, rate
		if t.Before(burstUntil) {
			end, cur = burstUntil, rate*burstFactor
		}
		if end.After(now) {
			end = now
		}
		next := t.Add(time.Duration(r.ExpFloat64() / cur * float64(time.Second)))
		if !next.Before(end) {
			// Arrivals are memoryless: start afresh at the boundary.
			t = end
			if t.Equal(nextBurst) {
				burstUntil = t.Add(burstLength)
				nextBurst = t.Add(between(r, burstEveryMin, burstEveryMax))
			}
			continue
		}
		t = next
		switch kindOf(r.Float64()) {
		case writeOrder:
			if orders.due && t.After(orders.from) {
				o := newOrder(r)
				o.At = t
				o.Status = seededOrderStatus(r, now.Sub(t))
				newOrders = append(newOrders, o)
			}
		case writeTicket:
			if !tickets.due || !t.After(tickets.from) {
				continue
			}
			if r.Float64() < openChance(len(open)) {
				tk := newTicket(r, t)
				open = append(open, openTicket{index: len(newTickets), priority: slices.Index(priorities, tk.Priority)})
				newTickets = append(newTickets, tk)
				continue
			}
			if len(open) == 0 {
				continue
			}
			// As Traffic's SQL does: the smallest random() * weight.
			k, least := 0, 2.0
			for i, o := range open {
				if x := r.Float64() * priorityCloseWeight[o.priority]; x < least {
					k, least = i, x
				}
			}
			o := open[k]
			open = slices.Delete(open, k, k+1)
			if o.index >= 0 {
				newTickets[o.index].Closed = t
			} else {
				tk := changed[o.id]
				tk.Priority, tk.Closed = priorities[o.priority], t
				changed[o.id] = tk
			}
		case writeEscalate:
			if !tickets.due || !t.After(tickets.from) {
				continue
			}
			var candidates []int
			for i, o := range open {
				if o.priority > 0 {
					candidates = append(candidates, i)
				}
			}
			if len(candidates) == 0 {
				continue
			}
			o := &open[candidates[r.IntN(len(candidates))]]
			o.priority--
			if o.index >= 0 {
				newTickets[o.index].Priority = priorities[o.priority]
			} else {
				tk := changed[o.id]
				tk.Priority = priorities[o.priority]
				changed[o.id] = tk
			}
		}
	}
	if err := copyOrders(ctx, tx, newOrders); err != nil {
		return err
	}
	if err := insertTickets(ctx, tx, newTickets, true); err != nil {
		return err
	}
	return updateTickets(ctx, tx, changed)
}

// copyOrders writes orders with their times by COPY, the fastest way in
// for the day of history at the live rate (a third of a million orders or
// more at the default rate).
func copyOrders(ctx context.Context, tx pgx.Tx, orders []order) error {
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"demo", "orders"},
		[]string{"created_at", "customer", "region", "product", "quantity", "amount", "status"},
		pgx.CopyFromSlice(len(orders), func(i int) ([]any, error) {
			o := orders[i]
			amount := pgtype.Numeric{Int: big.NewInt(o.Cents), Exp: -2, Valid: true}
			return []any{o.At, o.Customer, o.Region, o.Product, o.Quantity, amount, o.Status}, nil
		}))
	return err
}

// updateTickets writes the priority and closing time of tickets by id.
func updateTickets(ctx context.Context, tx pgx.Tx, changed map[int64]ticket) error {
	if len(changed) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(changed))
	priority := make([]string, len(ids))
	closed := make([]pgtype.Timestamptz, len(ids))
	for i, id := range ids {
		tk := changed[id]
		priority[i] = tk.Priority
		closed[i] = pgtype.Timestamptz{Time: tk.Closed, Valid: !tk.Closed.IsZero()}
	}
	_, err := tx.Exec(ctx, `UPDATE demo.tickets t
		SET priority = coalesce(nullif(u.priority, ''), t.priority), closed_at = coalesce(u.closed_at, t.closed_at)
		FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS u (id, priority, closed_at)
		WHERE t.id = u.id`, ids, priority, closed)
	return err
}

// seedDeploys starts deploys as Traffic does, every 20 to 60 s.
func seedDeploys(ctx context.Context, tx pgx.Tx, r *rand.Rand, g gap, now time.Time) error {
	if !g.due {
		return nil
	}
	var deploys []deploy
	failed := false
	for t := g.from; ; {
		t = t.Add(between(r, deployEveryMin, deployEveryMax))
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
	if g.full && !failed && len(deploys) > 2 {
		deploys[len(deploys)/2].Status = "failed"
	}
	return insertDeploys(ctx, tx, deploys)
}

// seedSensors records a reading of every sensor every 5 s, as Traffic does.
func seedSensors(ctx context.Context, tx pgx.Tx, r *rand.Rand, g gap, now time.Time) error {
	if !g.due {
		return nil
	}
	var readings []reading
	for t := g.from.Truncate(sensorEvery).Add(sensorEvery); !t.After(now); t = t.Add(sensorEvery) {
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
