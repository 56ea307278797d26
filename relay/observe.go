package relay

import (
	"errors"
	"time"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// ActivityKind says what an Activity reports.
type ActivityKind int

// The activities a relay reports to Config.Observer.
const (
	// ActivityConnected: a session's connections are open and LISTEN is
	// active (also after a reconnect).
	ActivityConnected ActivityKind = iota + 1
	// ActivityDisconnected: a session ended with Err; Reason classifies
	// it. The relay reconnects after RetryInterval.
	ActivityDisconnected
	// ActivityReconnectFailed: a reconnection attempt failed with Err.
	ActivityReconnectFailed
	// ActivityLeader: this relay holds the lease and delivers.
	ActivityLeader
	// ActivityStandby: another relay of the name delivers; this one stands
	// by (also after losing the lease, Reason "lease lost").
	ActivityStandby
	// ActivityPolling: notifications cannot reach the relay (a pooler in
	// between?); it reads the outbox every PollInterval.
	ActivityPolling
	// ActivityNotified: notifications work (again).
	ActivityNotified
	// ActivityBatch: a batch was handed to every handler and recorded as
	// delivered. Events are the batch (valid only during the call), and
	// Duration is how long reading, delivering and recording took.
	ActivityBatch
	// ActivityParked: a handler refused Events[0] permanently and it was
	// set aside in cdc.failed_event (recorded with the batch).
	ActivityParked
	// ActivityHandlerFailed: a handler returned Err; the events are
	// offered again after a backoff.
	ActivityHandlerFailed
	// ActivityStopped: the relay stopped (Err is set when it gave up).
	ActivityStopped
	// ActivityForeignNotification: a notification on the capture channel
	// that pgrelay did not send was ignored.
	ActivityForeignNotification
)

var activityNames = map[ActivityKind]string{
	ActivityConnected: "connected", ActivityDisconnected: "disconnected",
	ActivityReconnectFailed: "reconnect_failed", ActivityLeader: "leader", ActivityStandby: "standby",
	ActivityPolling: "polling", ActivityNotified: "notified", ActivityBatch: "batch",
	ActivityParked: "parked", ActivityHandlerFailed: "handler_failed", ActivityStopped: "stopped",
	ActivityForeignNotification: "foreign_notification",
}

// String returns the kind's name, such as "batch".
func (k ActivityKind) String() string {
	if n, ok := activityNames[k]; ok {
		return n
	}
	return "unknown"
}

// Activity is one thing a relay did, as Config.Observer receives it: the
// one place through which metrics, summaries and tests learn what the
// relay does, instead of reading its logs.
type Activity struct {
	Kind ActivityKind
	// At is when it happened.
	At time.Time
	// Name is the relay's Config.Name.
	Name string
	// Events: for ActivityBatch the batch, for ActivityParked the event.
	// Valid only during the call: copy what you keep.
	Events []Event
	// Duration: for ActivityBatch, reading, delivering and recording it.
	Duration time.Duration
	// Err: for ActivityDisconnected, ActivityReconnectFailed,
	// ActivityHandlerFailed, and ActivityStopped when it gave up.
	Err error
	// Reason classifies a disconnection for metrics: "lease_lost",
	// "watchdog", "database" or "handler"; for ActivityStandby after a lost
	// lease, "lease_lost".
	Reason string
	// Handler is the handler's type, for ActivityHandlerFailed and
	// ActivityParked.
	Handler string
}

// observe reports a to Config.Observer, if any, one call at a time.
func (r *Relay) observe(a Activity) {
	if r.cfg.Observer == nil {
		return
	}
	a.At, a.Name = time.Now(), r.cfg.Name
	r.observeMu.Lock()
	defer r.observeMu.Unlock()
	r.cfg.Observer(a)
}

// disconnectReason classifies the error that ended a session.
func disconnectReason(err error) string {
	switch {
	case errors.Is(err, sqlkit.ErrLeaseLost):
		return "lease_lost"
	case errors.Is(err, ErrWatchdog):
		return "watchdog"
	case errors.Is(err, errHandlerConnect):
		return "handler"
	}
	return "database"
}
