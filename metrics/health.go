package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/sqlkit"
)

// health is what /healthz and /readyz answer, kept up to date from the
// relay's activities.
type health struct {
	mu sync.Mutex
	// stopped: the relay's loops have ended.
	stopped bool
	// notReady is why the relay is not ready, "" when it is; sinkErr a
	// failing handler's error, statusErr a failing status query's.
	notReady, sinkErr, statusErr string
}

func (h *health) init() { h.notReady = "starting: not connected to PostgreSQL yet" }

func (h *health) observe(a relay.Activity) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch a.Kind {
	case relay.ActivityConnected:
		h.notReady = "connected, not yet delivering or standing by"
	case relay.ActivityLeader, relay.ActivityStandby:
		h.notReady = ""
	case relay.ActivityDisconnected, relay.ActivityReconnectFailed:
		h.notReady = unreadyReason(a)
	case relay.ActivityHandlerFailed:
		h.sinkErr = fmt.Sprintf("sink %s failing: %v", a.Handler, a.Err)
	case relay.ActivityBatch:
		h.sinkErr = ""
	case relay.ActivityStopped:
		h.stopped = true
		h.notReady = "stopped"
		if a.Err != nil {
			h.notReady = "stopped: " + a.Err.Error()
		}
	}
}

// unreadyReason says in one line why a session ended or could not start.
func unreadyReason(a relay.Activity) string {
	switch {
	case errors.Is(a.Err, sqlkit.ErrNotMigrated):
		return "the cdc schema is missing or out of date: run relay migrate"
	case a.Reason == "handler":
		return "a sink is unreachable: " + a.Err.Error()
	case a.Reason == "lease_lost":
		return "lost the lease to another relay; reconnecting to stand by"
	}
	return "database unreachable: " + a.Err.Error()
}

// setStatusErr records whether the last status query failed.
func (h *health) setStatusErr(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.statusErr = ""
	if err != nil {
		h.statusErr = "database unreachable: " + err.Error()
	}
}

func (h *health) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	stopped := h.stopped
	h.mu.Unlock()
	if stopped {
		http.Error(w, "the relay has stopped", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (h *health) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	reason := h.notReady
	if reason == "" {
		reason = h.sinkErr
	}
	if reason == "" {
		reason = h.statusErr
	}
	h.mu.Unlock()
	if reason != "" {
		http.Error(w, strings.Join(strings.Fields(reason), " "), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}
