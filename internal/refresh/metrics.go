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

	panelQueries     *prometheus.CounterVec
	standbyFallbacks *prometheus.CounterVec
	replayWait       prometheus.Histogram
	standbys         *prometheus.GaugeVec
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
		panelQueries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dashboard", Name: "panel_queries_total",
			Help: "Panel queries answered (data or the SQL's own error), by the database that answered: primary or standby.",
		}, []string{"db"}),
		standbyFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dashboard", Name: "standby_fallbacks_total",
			Help: "Panel and variable queries meant for a standby that ran on the primary, by reason: lag (not replayed within DASHBOARD_STANDBY_MAX_WAIT, or lagging since), down, promoted, conflict (cancelled by replay), recovery (SQL a standby cannot run), position (the primary's WAL position unreadable), unflushed (not replayed within DASHBOARD_STANDBY_MAX_WAIT, but the standby had all the primary had flushed: not lagging).",
		}, []string{"reason"}),
		replayWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "dashboard", Name: "standby_replay_wait_seconds",
			Help:    "Time a query waited for a standby to replay the primary's WAL position, bounded by DASHBOARD_STANDBY_MAX_WAIT.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		standbys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "dashboard", Name: "standbys",
			Help: "Standbys of DASHBOARD_READ_DATABASE_URL by state: usable, lagging (missed a position within DASHBOARD_STANDBY_MAX_WAIT, skipped until it has replayed it), down (unreachable, retried) or promoted (not in recovery, not used).",
		}, []string{"state"}),
	}
	for _, o := range []string{"changed", "unchanged", "error"} {
		m.queries.WithLabelValues(o)
	}
	for _, db := range []string{"primary", "standby"} {
		m.panelQueries.WithLabelValues(db)
	}
	for _, r := range fallbackReasons {
		m.standbyFallbacks.WithLabelValues(r)
	}
	for _, st := range standbyStates {
		m.standbys.WithLabelValues(st.String())
	}
	if reg != nil {
		reg.MustRegister(m.queries, m.duration, m.notifyToResult, m.queueUsage, m.failing, m.views, m.viewsRefused, m.viewsDropped,
			m.panelQueries, m.standbyFallbacks, m.replayWait, m.standbys)
	}
	return m
}
