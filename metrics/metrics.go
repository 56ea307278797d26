// Package metrics turns a relay's activity into Prometheus metrics and
// health endpoints:
//
//	m := metrics.New(metrics.Config{Name: "default"})
//	r, _ := relay.New(relay.Config{…, Observer: m.Observe}, sinks…)
//	http.ListenAndServe("127.0.0.1:9187", m.Handler())
//
// /metrics serves the pgrelay_* metrics below plus Go and process metrics;
// /healthz says whether the relay's loops are alive; /readyz whether it is
// connected to PostgreSQL and its sinks and delivering or standing by.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgrelay/pgrelay/relay"
)

// Config configures Metrics.
type Config struct {
	// Name is the relay name whose backlog RunBacklog reports. Defaults
	// to relay.DefaultName.
	Name string
	// Registry receives the metrics. Defaults to a new registry holding
	// pgrelay's, Go's and the process's metrics only.
	Registry *prometheus.Registry
}

// Metrics collects one relay's metrics. Create it with New; pass Observe as
// relay.Config.Observer. It is safe for concurrent use.
type Metrics struct {
	cfg Config

	delivered  *prometheus.CounterVec
	parked     prometheus.Counter
	batches    prometheus.Counter
	batchTime  prometheus.Histogram
	lag        prometheus.Histogram
	backlog    prometheus.Gauge
	oldestAge  prometheus.Gauge
	reconnects *prometheus.CounterVec
	leader     prometheus.Gauge
	polling    prometheus.Gauge

	health health

	// parked are the ids of the events parked in the batch being
	// delivered: they are in the batch's Activity, but were not delivered.
	parkedMu  sync.Mutex
	parkedIDs map[int64]bool

	// onStatus, if set, gets each status RunBacklog reads.
	onStatus func(relay.Status)
}

// OnStatus makes RunBacklog pass each status it reads to fn as well (for a
// log summary, say). Call it before RunBacklog.
func (m *Metrics) OnStatus(fn func(relay.Status)) { m.onStatus = fn }

// New returns Metrics registered in cfg.Registry.
func New(cfg Config) *Metrics {
	if cfg.Name == "" {
		cfg.Name = relay.DefaultName
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	f := promauto.With(cfg.Registry)
	m := &Metrics{
		cfg: cfg,
		delivered: f.NewCounterVec(prometheus.CounterOpts{Name: "pgrelay_events_delivered_total",
			Help: "Events every handler accepted, by table and action (custom events: schema \"\", table their channel)."},
			[]string{"schema", "table", "action"}),
		parked: f.NewCounter(prometheus.CounterOpts{Name: "pgrelay_events_parked_total",
			Help: "Events a handler refused permanently, set aside in cdc.failed_event."}),
		batches: f.NewCounter(prometheus.CounterOpts{Name: "pgrelay_batches_total", Help: "Batches delivered and recorded."}),
		batchTime: f.NewHistogram(prometheus.HistogramOpts{Name: "pgrelay_batch_duration_seconds",
			Help:    "Time to read a batch, hand it to every handler and record it as delivered.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		lag: f.NewHistogram(prometheus.HistogramOpts{Name: "pgrelay_delivery_lag_seconds",
			Help:    "Time from a row's change (its transaction's clock) to every handler having accepted its event.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		backlog: f.NewGauge(prometheus.GaugeOpts{Name: "pgrelay_backlog_events",
			Help: "Undelivered events of this relay name, refreshed every watchdog interval."}),
		oldestAge: f.NewGauge(prometheus.GaugeOpts{Name: "pgrelay_oldest_pending_age_seconds",
			Help: "Age of the oldest undelivered event (0: none), refreshed every watchdog interval."}),
		reconnects: f.NewCounterVec(prometheus.CounterOpts{Name: "pgrelay_reconnects_total",
			Help: "Sessions that ended and reconnected, by reason: database, watchdog, handler, lease_lost."}, []string{"reason"}),
		leader: f.NewGauge(prometheus.GaugeOpts{Name: "pgrelay_leader",
			Help: "1 while this relay delivers for its name, 0 while it stands by."}),
		polling: f.NewGauge(prometheus.GaugeOpts{Name: "pgrelay_polling",
			Help: "1 while notifications cannot reach the relay and it polls the outbox, 0 otherwise."}),
	}
	m.health.init()
	return m
}

// Observe records one activity; pass it as relay.Config.Observer.
func (m *Metrics) Observe(a relay.Activity) {
	switch a.Kind {
	case relay.ActivityBatch:
		m.batches.Inc()
		m.batchTime.Observe(a.Duration.Seconds())
		m.parkedMu.Lock()
		parked := m.parkedIDs
		m.parkedIDs = nil
		m.parkedMu.Unlock()
		// Counted by runs of events of one table and action (a statement's
		// chunk, a transaction): looking a labelled counter up for every
		// event was a sixth of the relay's CPU while draining a backlog.
		var (
			run   *relay.Event // the first event of the current run
			n     int          // its delivered events
			stamp time.Time    // the last lag observed, and its value
			lag   float64
		)
		for i := range a.Events {
			e := &a.Events[i]
			if parked[e.ID] {
				continue
			}
			if run == nil || !sameLabels(run, e) {
				m.countDelivered(run, n)
				run, n = e, 0
			}
			n++
			if !e.Timestamp.Equal(stamp) {
				stamp, lag = e.Timestamp, a.At.Sub(e.Timestamp).Seconds()
			}
			m.lag.Observe(lag)
		}
		m.countDelivered(run, n)
	case relay.ActivityParked:
		m.parked.Inc()
		m.parkedMu.Lock()
		if m.parkedIDs == nil {
			m.parkedIDs = map[int64]bool{}
		}
		m.parkedIDs[a.Events[0].ID] = true
		m.parkedMu.Unlock()
	case relay.ActivityDisconnected:
		m.reconnects.WithLabelValues(a.Reason).Inc()
		m.leader.Set(0)
	case relay.ActivityLeader:
		m.leader.Set(1)
	case relay.ActivityStandby:
		m.leader.Set(0)
	case relay.ActivityPolling:
		m.polling.Set(1)
	case relay.ActivityNotified:
		m.polling.Set(0)
	}
	m.health.observe(a)
}

// countDelivered adds n delivered events labelled as e (none when e is nil).
func (m *Metrics) countDelivered(e *relay.Event, n int) {
	if e != nil && n > 0 {
		m.delivered.WithLabelValues(e.Schema, labelTable(e), string(e.Action)).Add(float64(n))
	}
}

// sameLabels reports whether a and b count under the same labels.
func sameLabels(a, b *relay.Event) bool {
	return a.Action == b.Action && a.Schema == b.Schema && labelTable(a) == labelTable(b)
}

// labelTable is the table label of e: its table, or a custom event's
// channel.
func labelTable(e *relay.Event) string {
	if e.Action == relay.ActionMessage {
		return e.CustomChannel
	}
	return e.Table
}

// SetBacklog records the backlog figures of a relay.Status.
func (m *Metrics) SetBacklog(st relay.Status) {
	m.backlog.Set(float64(st.Pending))
	m.oldestAge.Set(st.OldestPendingAge) // 0 when nothing is pending
}

// Handler serves /metrics, /healthz and /readyz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.cfg.Registry, promhttp.HandlerOpts{Registry: m.cfg.Registry}))
	mux.HandleFunc("GET /healthz", m.health.serveHealthz)
	mux.HandleFunc("GET /readyz", m.health.serveReadyz)
	return mux
}
