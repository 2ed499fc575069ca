package demo

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Traffic timing. Writes driven by the rate are spread over ticks; the rest
// follow the clock, so charts keep their shape whatever the rate.
const (
	tick           = 50 * time.Millisecond
	burstFactor    = 10
	burstLength    = 2 * time.Second
	burstEveryMin  = 20 * time.Second
	burstEveryMax  = 40 * time.Second
	sensorEvery    = 5 * time.Second
	fulfilEvery    = 2 * time.Second
	deployEveryMin = 20 * time.Second
	deployEveryMax = 60 * time.Second
	deployRunning  = 10 * time.Second // a deploy runs this long before it ends
	maintainEvery  = time.Minute
	backoffMin     = 250 * time.Millisecond
	backoffMax     = 30 * time.Second
	targetOpen     = 25 // open tickets Traffic steers towards
)

// The rate-driven writes, as shares of all of them.
const (
	orderShare    = 0.84 // a new order
	refundShare   = 0.04 // refund a shipped order
	ticketShare   = 0.10 // open or close a ticket
	escalateShare = 0.02 // raise an open ticket's priority
)

// write is the kind of one rate-driven write.
type write int

const (
	writeOrder write = iota
	writeRefund
	writeTicket
	writeEscalate
)

// kindOf maps x, uniform in [0, 1), to a kind of write in the proportions
// above. Traffic and the seeded history both draw their writes with it.
func kindOf(x float64) write {
	switch {
	case x < orderShare:
		return writeOrder
	case x < orderShare+refundShare:
		return writeRefund
	case x < orderShare+refundShare+ticketShare:
		return writeTicket
	default:
		return writeEscalate
	}
}

// meanRate is the writes per second Traffic makes on average at rate:
// steady, plus a burst of burstFactor times the rate for burstLength every
// burstEveryMin to burstEveryMax.
func meanRate(rate float64) float64 {
	period := (burstEveryMin + burstEveryMax).Seconds() / 2
	return rate * (1 + (burstFactor-1)*burstLength.Seconds()/period)
}

// Traffic writes to the demo tables until ctx is cancelled, at about rate
// writes per second, steady with a burst of ten times the rate for 2 s
// every 20-40 s, so screens move. Most writes are new orders; the rest
// refund orders and open, close or escalate tickets. Independently of the
// rate, while it runs, it records sensor readings every 5 s, moves orders
// from pending to paid to shipped, starts a deploy every 20-60 s and ends
// it 10 s later, and once a minute deletes rows past their retention, so the
// tables stay bounded.
//
// With rate 0 it writes nothing and returns nil at once. Otherwise it
// returns nil when ctx is cancelled; database errors (a restart, a missing
// schema) are logged and retried with a capped exponential backoff, and
// the writes missed meanwhile are dropped rather than caught up.
func Traffic(ctx context.Context, pool *pgxpool.Pool, rate float64, logger *slog.Logger) error {
	if !(rate > 0) {
		return nil
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &generator{
		pool:   pool,
		rate:   rate,
		logger: logger,
		r:      rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		open:   -1,
	}
	return g.run(ctx)
}

// generator is one Traffic run's state; only its goroutine touches it.
type generator struct {
	pool   *pgxpool.Pool
	rate   float64
	logger *slog.Logger
	r      *rand.Rand

	credit     float64 // rate-driven writes owed, fractional
	burstUntil time.Time
	nextBurst  time.Time
	nextSensor time.Time
	nextFulfil time.Time
	nextDeploy time.Time
	nextMaint  time.Time
	open       int // open tickets as last known; -1 unknown
}

func (g *generator) run(ctx context.Context) error {
	now := time.Now()
	g.nextBurst = now.Add(g.between(burstEveryMin, burstEveryMax))
	g.nextDeploy = now.Add(g.between(0, deployEveryMax-deployEveryMin))
	last := now
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	backoff := backoffMin
	for {
		select {
		case <-ctx.Done():
			return nil
		case now = <-ticker.C:
		}
		dt := min(now.Sub(last), time.Second)
		last = now
		err := g.step(ctx, now, dt)
		if err == nil {
			backoff = backoffMin
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := backoff/2 + time.Duration(g.r.Int64N(int64(backoff)))
		g.logger.Warn("demo traffic: writing failed, retrying", "err", err, "retry_in", wait)
		backoff = min(backoff*2, backoffMax)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		// Drop what was missed: no catch-up storm after an outage.
		g.credit = 0
		g.open = -1
		last = time.Now()
	}
}

func (g *generator) between(lo, hi time.Duration) time.Duration { return between(g.r, lo, hi) }

// between is a random duration in [lo, hi).
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// step does what is due at now, dt after the previous step, in one batch
// (one round trip, one transaction).
func (g *generator) step(ctx context.Context, now time.Time, dt time.Duration) error {
	if !now.Before(g.nextMaint) {
		if err := g.maintain(ctx); err != nil {
			return err
		}
		g.nextMaint = now.Add(maintainEvery)
	}
	if !now.Before(g.nextBurst) {
		g.burstUntil = now.Add(burstLength)
		g.nextBurst = now.Add(g.between(burstEveryMin, burstEveryMax))
	}
	rate := g.rate
	if now.Before(g.burstUntil) {
		rate *= burstFactor
	}
	// At most a second's worth (and at least one write, so rates below 1/s
	// still write).
	g.credit = min(g.credit+rate*dt.Seconds(), max(rate, 1))
	n := int(g.credit)

	var b pgx.Batch
	var orders []order
	var tickets []ticket
	refunds, closes, escalations := 0, 0, 0
	for range n {
		switch kindOf(g.r.Float64()) {
		case writeOrder:
			orders = append(orders, newOrder(g.r))
		case writeRefund:
			refunds++
		case writeTicket:
			if g.r.Float64() < g.openChance(len(tickets)-closes) {
				tickets = append(tickets, newTicket(g.r, now))
			} else {
				closes++
			}
		case writeEscalate:
			escalations++
		}
	}
	if len(orders) > 0 {
		b.Queue(insertOrdersSQL(false), orderArgs(orders)...)
	}
	if refunds > 0 {
		// Refund a few orders shipped minutes ago.
		b.Queue(`UPDATE demo.orders SET status = 'refunded'
			WHERE id IN (SELECT id FROM demo.orders
			             WHERE status = 'shipped' AND created_at BETWEEN now() - interval '10 minutes' AND now() - interval '1 minute'
			             ORDER BY random() LIMIT $1)`, refunds)
	}
	var opened, closed *int64
	if len(tickets) > 0 {
		opened = new(int64)
		b.Queue(insertTicketsSQL(false), ticketArgs(tickets)...).Exec(func(ct pgconn.CommandTag) error {
			*opened = ct.RowsAffected()
			return nil
		})
	}
	if closes > 0 {
		closed = new(int64)
		// Urgent tickets are the likeliest to be closed.
		b.Queue(`UPDATE demo.tickets SET closed_at = now()
			WHERE id IN (SELECT id FROM demo.tickets WHERE closed_at IS NULL
			             ORDER BY random() * CASE priority WHEN 'urgent' THEN 0.25 WHEN 'high' THEN 0.5 WHEN 'normal' THEN 0.8 ELSE 1 END
			             LIMIT $1)`, closes).Exec(func(ct pgconn.CommandTag) error {
			*closed = ct.RowsAffected()
			return nil
		})
	}
	if escalations > 0 {
		b.Queue(`UPDATE demo.tickets
			SET priority = CASE priority WHEN 'low' THEN 'normal' WHEN 'normal' THEN 'high' ELSE 'urgent' END
			WHERE id IN (SELECT id FROM demo.tickets WHERE closed_at IS NULL AND priority <> 'urgent'
			             ORDER BY random() LIMIT $1)`, escalations)
	}
	sensorDue := !now.Before(g.nextSensor)
	if sensorDue {
		readings := make([]reading, len(sensors))
		for i, s := range sensors {
			readings[i] = s.read(g.r, now)
		}
		b.Queue(insertReadingsSQL(false), readingArgs(readings)...)
	}
	fulfilDue := !now.Before(g.nextFulfil)
	if fulfilDue {
		b.Queue(`UPDATE demo.orders o SET status = CASE WHEN s.r < 0.03 THEN 'failed' ELSE 'paid' END
			FROM (SELECT id, random() AS r FROM demo.orders
			      WHERE status = 'pending' AND created_at < now() - interval '10 seconds') s
			WHERE o.id = s.id`)
		b.Queue(`UPDATE demo.orders SET status = 'shipped'
			WHERE status = 'paid' AND created_at < now() - interval '1 minute'`)
		b.Queue(`UPDATE demo.deploys d
			SET status = CASE WHEN s.r < 0.10 THEN 'failed' WHEN s.r < 0.15 THEN 'rolled back' ELSE 'succeeded' END
			FROM (SELECT id, random() AS r FROM demo.deploys
			      WHERE status = 'running' AND deployed_at < now() - $1::interval) s
			WHERE d.id = s.id`, deployRunning)
	}
	deployDue := !now.Before(g.nextDeploy)
	if deployDue {
		d := newDeploy(g.r, now)
		b.Queue(`INSERT INTO demo.deploys (service, version, environment, status, author)
			VALUES ($1, $2, $3, 'running', $4)`, d.Service, d.Version, d.Environment, d.Author)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := g.pool.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("writing demo traffic: %w", err)
	}
	g.credit -= float64(n)
	if g.open >= 0 {
		if opened != nil {
			g.open += int(*opened)
		}
		if closed != nil {
			g.open -= int(*closed)
		}
	}
	if sensorDue {
		g.nextSensor = now.Add(sensorEvery)
	}
	if fulfilDue {
		g.nextFulfil = now.Add(fulfilEvery)
	}
	if deployDue {
		g.nextDeploy = now.Add(g.between(deployEveryMin, deployEveryMax))
	}
	return nil
}

// openChance is the probability that a ticket write opens a ticket rather
// than closing one; it steers the open count towards targetOpen. pending
// is the change already planned in this step.
func (g *generator) openChance(pending int) float64 {
	if g.open < 0 {
		return 0.5
	}
	return openChance(g.open + pending)
}

// openChance is the probability that a ticket write opens a ticket when
// open tickets are open.
func openChance(open int) float64 {
	return min(max(0.5+0.02*float64(targetOpen-open), 0.1), 0.9)
}

// maintain deletes rows past their retention and re-reads the open ticket
// count.
func (g *generator) maintain(ctx context.Context) error {
	stmts := []struct {
		sql string
		age time.Duration
	}{
		{"DELETE FROM demo.sensor_readings WHERE reading_at < now() - $1::interval", sensorRetention},
		{"DELETE FROM demo.orders WHERE created_at < now() - $1::interval", orderRetention},
		{"DELETE FROM demo.tickets WHERE closed_at < now() - $1::interval", ticketRetention},
		{"DELETE FROM demo.deploys WHERE deployed_at < now() - $1::interval", deployRetention},
	}
	for _, s := range stmts {
		if _, err := g.pool.Exec(ctx, s.sql, s.age); err != nil {
			return fmt.Errorf("deleting old demo rows: %w", err)
		}
	}
	var open int
	if err := g.pool.QueryRow(ctx, "SELECT count(*) FROM demo.tickets WHERE closed_at IS NULL").Scan(&open); err != nil {
		return fmt.Errorf("counting open demo tickets: %w", err)
	}
	g.open = open
	return nil
}
