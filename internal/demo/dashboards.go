package demo

import (
	"fmt"
	"strings"

	"github.com/livedash/dashboard/internal/panel"
)

// dashboardSpec is one demo dashboard with its panels in display order.
type dashboardSpec struct {
	slug, title, description string
	position                 int
	panels                   []panelSpec
}

// panelSpec is one demo panel. Its SQL follows the column conventions of
// its kind (docs/panels.md): stat reads the first column of the last row
// (earlier rows feed the delta and sparkline, oldest first); timeseries is
// (time, series, value) long form or (time, value…) wide form; bar is
// (label, value…); feed is (time, main, details…) newest first.
type panelSpec struct {
	slug, title   string
	kind          panel.Kind
	sql           string
	width, height int
	options       panel.Options
}

func decimals(n int) *int { return &n }

// epoch anchors date_bin buckets; any fixed instant on a minute boundary
// works.
const epoch = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"

// dashboards are the demo dashboards, both public.
var dashboards = []dashboardSpec{
	{
		slug:        "sales",
		title:       "Sales — live",
		description: "Orders from the demo shop as they come in.",
		position:    0,
		panels: []panelSpec{
			{
				slug: "revenue-today", title: "Revenue today", kind: panel.Stat, width: 1, height: 1,
				options: panel.Options{Prefix: "$", Decimals: decimals(0), Sparkline: true, Delta: true},
				// Running total per half hour since midnight; the last row is
				// the total so far, the delta what the last half hour added.
				sql: `SELECT sum(coalesce(sum(o.amount), 0)) OVER (ORDER BY b.bucket) AS revenue
FROM generate_series(date_trunc('day', now()), now(), interval '30 minutes') AS b (bucket)
LEFT JOIN demo.orders o
       ON o.created_at >= b.bucket
      AND o.created_at < b.bucket + interval '30 minutes'
      AND o.status NOT IN ('failed', 'refunded')
GROUP BY b.bucket
ORDER BY b.bucket`,
			},
			{
				slug: "orders-last-hour", title: "Orders, last hour", kind: panel.Stat, width: 1, height: 1,
				options: panel.Options{Decimals: decimals(0), Sparkline: true, Delta: true},
				// Twelve rolling one-hour windows, oldest first.
				sql: `SELECT count(o.id) AS orders
FROM generate_series(11, 0, -1) AS w (hours_ago)
LEFT JOIN demo.orders o
       ON o.created_at > now() - (w.hours_ago + 1) * interval '1 hour'
      AND o.created_at <= now() - w.hours_ago * interval '1 hour'
GROUP BY w.hours_ago
ORDER BY w.hours_ago DESC`,
			},
			{
				slug: "average-order", title: "Average order, last hour", kind: panel.Stat, width: 1, height: 1,
				options: panel.Options{Prefix: "$", Decimals: decimals(2)},
				sql: `SELECT round(avg(amount), 2) AS average_order
FROM demo.orders
WHERE created_at > now() - interval '1 hour'
  AND status <> 'failed'`,
			},
			{
				slug: "refund-rate", title: "Refund rate, 24 h", kind: panel.Stat, width: 1, height: 1,
				options: panel.Options{Unit: "%", Decimals: decimals(1)},
				sql: `SELECT round(100.0 * count(*) FILTER (WHERE status = 'refunded') / nullif(count(*), 0), 1) AS refund_rate
FROM demo.orders
WHERE created_at > now() - interval '24 hours'`,
			},
			{
				slug: "revenue-by-region", title: "Revenue per minute by region", kind: panel.Timeseries, width: 3, height: 2,
				options: panel.Options{Prefix: "$", Decimals: decimals(0)},
				sql: `SELECT date_bin('1 minute', created_at, ` + epoch + `) AS minute,
       region,
       sum(amount) AS revenue
FROM demo.orders
WHERE created_at >= date_bin('1 minute', now(), ` + epoch + `) - interval '30 minutes'
  AND status NOT IN ('failed', 'refunded')
GROUP BY 1, 2
ORDER BY 1, 2`,
			},
			{
				slug: "orders-by-product", title: "Orders by product, last hour", kind: panel.Bar, width: 1, height: 2,
				options: panel.Options{Decimals: decimals(0)},
				// Every product, even one without orders, so bars keep their
				// places on a wall screen.
				sql: `SELECT p.product, count(o.id) AS orders
FROM (VALUES ` + valuesList(productNames()) + `) AS p (product)
LEFT JOIN demo.orders o
       ON o.product = p.product
      AND o.created_at > now() - interval '1 hour'
GROUP BY p.product
ORDER BY p.product`,
			},
			{
				slug: "latest-orders", title: "Latest orders", kind: panel.Feed, width: 2, height: 2,
				options: panel.Options{Limit: 12},
				sql: `SELECT created_at,
       customer || ' — ' || quantity || ' × ' || product AS item,
       '$' || to_char(amount, 'FM999,999,990.00') AS amount,
       region,
       status
FROM demo.orders
ORDER BY created_at DESC, id DESC
LIMIT 12`,
			},
			{
				slug: "top-customers", title: "Top customers, last hour", kind: panel.Table, width: 2, height: 2,
				sql: `SELECT customer,
       count(*) AS orders,
       sum(amount) AS revenue,
       max(created_at) AS last_order
FROM demo.orders
WHERE created_at > now() - interval '1 hour'
  AND status NOT IN ('failed', 'refunded')
GROUP BY customer
ORDER BY revenue DESC, customer
LIMIT 10`,
			},
		},
	},
	{
		slug:        "ops",
		title:       "Operations",
		description: "Support queue, deploys and room sensors.",
		position:    1,
		panels: []panelSpec{
			{
				slug: "open-tickets", title: "Open tickets", kind: panel.Stat, width: 1, height: 1,
				options: panel.Options{Decimals: decimals(0), Sparkline: true, Delta: true},
				// Open tickets every 15 minutes over 6 hours; the last point is
				// now.
				sql: `SELECT count(t.id) AS open_tickets
FROM generate_series(now() - interval '6 hours', now(), interval '15 minutes') AS b (at)
LEFT JOIN demo.tickets t
       ON t.opened_at <= b.at
      AND (t.closed_at IS NULL OR t.closed_at > b.at)
GROUP BY b.at
ORDER BY b.at`,
			},
			{
				slug: "urgent-tickets", title: "Urgent tickets", kind: panel.Stat, width: 1, height: 1,
				options: panel.Options{Decimals: decimals(0)},
				sql: `SELECT count(*) AS urgent
FROM demo.tickets
WHERE closed_at IS NULL
  AND priority = 'urgent'`,
			},
			{
				slug: "median-resolution", title: "Median resolution, 6 h", kind: panel.Stat, width: 1, height: 1,
				options: panel.Options{Unit: " min", Decimals: decimals(0)},
				sql: `SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM closed_at - opened_at)) / 60)::numeric, 1) AS median_minutes
FROM demo.tickets
WHERE closed_at > now() - interval '6 hours'`,
			},
			{
				slug: "deploy-success", title: "Deploy success, 24 h", kind: panel.Stat, width: 1, height: 1,
				options: panel.Options{Unit: "%", Decimals: decimals(0)},
				sql: `SELECT round(100.0 * count(*) FILTER (WHERE status = 'succeeded')
             / nullif(count(*) FILTER (WHERE status <> 'running'), 0), 1) AS success_rate
FROM demo.deploys
WHERE deployed_at > now() - interval '24 hours'`,
			},
			{
				slug: "sensor-temperature", title: "Temperature by sensor, 30 min", kind: panel.Timeseries, width: 3, height: 2,
				options: panel.Options{Unit: "°C", Decimals: decimals(1)},
				sql: `SELECT date_bin('30 seconds', reading_at, ` + epoch + `) AS at,
       sensor,
       round(avg(temperature), 2) AS temperature
FROM demo.sensor_readings
WHERE reading_at > now() - interval '30 minutes'
GROUP BY 1, 2
ORDER BY 1, 2`,
			},
			{
				slug: "tickets-by-priority", title: "Open tickets by priority", kind: panel.Bar, width: 1, height: 2,
				options: panel.Options{Decimals: decimals(0)},
				sql: `SELECT p.priority, count(t.id) AS open_tickets
FROM (VALUES ` + rankedValuesList(priorities) + `) AS p (ord, priority)
LEFT JOIN demo.tickets t
       ON t.priority = p.priority
      AND t.closed_at IS NULL
GROUP BY p.ord, p.priority
ORDER BY p.ord`,
			},
			{
				slug: "latest-deploys", title: "Latest deploys", kind: panel.Feed, width: 2, height: 2,
				options: panel.Options{Limit: 12},
				sql: `SELECT deployed_at,
       service || ' ' || version AS deploy,
       environment,
       status,
       author
FROM demo.deploys
ORDER BY deployed_at DESC, id DESC
LIMIT 12`,
			},
			{
				slug: "failed-deploys", title: "Recent failed deploys", kind: panel.Table, width: 2, height: 2,
				sql: `SELECT deployed_at, service, version, environment, status, author
FROM demo.deploys
WHERE status IN ('failed', 'rolled back')
ORDER BY deployed_at DESC, id DESC
LIMIT 10`,
			},
			{
				slug: "sensor-humidity", title: "Humidity by sensor, 30 min", kind: panel.Timeseries, width: 2, height: 2,
				options: panel.Options{Unit: "%", Decimals: decimals(0)},
				// Wide form: one column per sensor.
				sql: `SELECT date_bin('1 minute', reading_at, ` + epoch + `) AS at,
` + humidityColumns() + `
FROM demo.sensor_readings
WHERE reading_at > now() - interval '30 minutes'
GROUP BY 1
ORDER BY 1`,
			},
			{
				slug: "latest-tickets", title: "Latest tickets", kind: panel.Feed, width: 2, height: 2,
				options: panel.Options{Limit: 12},
				sql: `SELECT opened_at,
       subject,
       customer,
       priority,
       CASE WHEN closed_at IS NULL THEN 'open' ELSE 'closed' END AS state
FROM demo.tickets
ORDER BY opened_at DESC, id DESC
LIMIT 12`,
			},
		},
	},
}

func productNames() []string {
	names := make([]string, len(products))
	for i, p := range products {
		names[i] = p.name
	}
	return names
}

// quote is a SQL string literal. The demo's own constants never hold a
// quote, but this keeps the generated SQL right if one ever does.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// quoteIdent is a SQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// valuesList is the rows of a one-column VALUES list.
func valuesList(items []string) string {
	rows := make([]string, len(items))
	for i, s := range items {
		rows[i] = "(" + quote(s) + ")"
	}
	return strings.Join(rows, ", ")
}

// rankedValuesList is the rows of a (rank, item) VALUES list.
func rankedValuesList(items []string) string {
	rows := make([]string, len(items))
	for i, s := range items {
		rows[i] = fmt.Sprintf("(%d, %s)", i+1, quote(s))
	}
	return strings.Join(rows, ", ")
}

// humidityColumns is one averaged humidity column per sensor, named after
// the sensor.
func humidityColumns() string {
	cols := make([]string, len(sensors))
	for i, s := range sensors {
		cols[i] = fmt.Sprintf("       round(avg(humidity) FILTER (WHERE sensor = %s), 1) AS %s", quote(s.name), quoteIdent(s.name))
	}
	return strings.Join(cols, ",\n")
}
