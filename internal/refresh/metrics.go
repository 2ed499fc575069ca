package refresh

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func (e *Engine) pollQueueUsage(ctx context.Context) {
	t := time.NewTicker(e.cfg.QueueUsageInterval)
	defer t.Stop()
	for {
		var usage float64
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := e.cfg.Pool.QueryRow(qctx, "SELECT pg_notification_queue_usage()").Scan(&usage)
		cancel()
		if err == nil {
			e.cfg.Metrics.queueUsage.Set(usage)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Metrics are the engine's Prometheus metrics.
type Metrics struct {
	queries        *prometheus.CounterVec
	duration       prometheus.Histogram
	notifyToResult prometheus.Histogram
	queueUsage     prometheus.Gauge
	failing        prometheus.Gauge
	views          prometheus.Gauge
	viewsRefused   prometheus.Counter
	viewsDropped   prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg, if not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dashboard", Name: "refresh_queries_total",
			Help: "Panel queries run, by outcome: changed, unchanged or error.",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "dashboard", Name: "refresh_duration_seconds",
			Help:    "Time to run one panel query, transaction included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		notifyToResult: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "dashboard", Name: "notify_to_result_seconds",
			Help:    "Time from receipt of a notification to the panel result that reflects it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		queueUsage: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "dashboard", Name: "notify_queue_usage",
			Help: "pg_notification_queue_usage(): fraction of the server's notification queue in use.",
		}),
		failing: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "dashboard", Name: "panels_failing",
			Help: "Panels whose query fails (in at least one view); each keeps showing its last good data.",
		}),
		views: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "dashboard", Name: "views",
			Help: "Distinct views (a dashboard and one choice of its variables) the engine knows, with or without viewers.",
		}),
		viewsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dashboard", Name: "views_refused_total",
			Help: "New views refused (429) because their dashboard had DASHBOARD_MAX_VIEWS views, all with viewers.",
		}),
		viewsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dashboard", Name: "views_dropped_total",
			Help: "Views without viewers forgotten to make room for a new one, or because their dashboard was deleted.",
		}),
	}
	for _, o := range []string{"changed", "unchanged", "error"} {
		m.queries.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.queries, m.duration, m.notifyToResult, m.queueUsage, m.failing, m.views, m.viewsRefused, m.viewsDropped)
	}
	return m
}
