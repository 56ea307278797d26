package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// cpuSample is the CPU time pgbench's backends used over a window of one
// run, and the transactions committed meanwhile.
type cpuSample struct {
	cpu time.Duration
	txs int64
	err error
}

// perTx returns the sample's CPU time per transaction in µs.
func (s cpuSample) perTx() float64 {
	if s.txs <= 0 {
		return math.NaN()
	}
	return float64(s.cpu) / float64(time.Microsecond) / float64(s.txs)
}

// sampleBackendCPU measures the CPU time the backends of a pgbench run of
// d with clients clients use, and the transactions the row-filter
// comparison's id sequence counts meanwhile, from 0.1 s after they have all
// connected to the last of the readings taken every 0.1 s after that while
// they all still are, until ctx is done. The server must run on this
// machine: the backends are read from /proc, and only those whose command
// line names the run's database count.
func (e *env) sampleBackendCPU(ctx context.Context, clients int, d time.Duration) cpuSample {
	deadline := time.Now().Add(10*time.Second + d)
	for {
		pids, err := e.pgbenchPIDs(ctx)
		if err != nil {
			return cpuSample{err: err}
		}
		if len(pids) == clients {
			break
		}
		if time.Now().After(deadline) {
			return cpuSample{err: fmt.Errorf("%d of pgbench's %d connections seen", len(pids), clients)}
		}
		select {
		case <-ctx.Done():
			return cpuSample{err: errors.New("pgbench ended before all its clients had connected")}
		case <-time.After(10 * time.Millisecond):
		}
	}
	const every = 100 * time.Millisecond
	select {
	case <-ctx.Done():
		return cpuSample{err: errors.New("pgbench ended before the first reading")}
	case <-time.After(every):
	}
	start := time.Now()
	cpu0, txs0, err := e.readBackendCPU(ctx)
	if err != nil {
		return cpuSample{err: err}
	}
	if len(cpu0) != clients {
		return cpuSample{err: fmt.Errorf("%d of pgbench's %d backends at the first reading", len(cpu0), clients)}
	}
	var s cpuSample
	last := start
	t := time.NewTicker(every)
	defer t.Stop()
readings:
	for {
		select {
		case <-ctx.Done():
			break readings
		case <-t.C:
		}
		// A reading that fails, or misses a backend, is pgbench ending.
		cpu, txs, err := e.readBackendCPU(ctx)
		if err != nil || len(cpu) != clients {
			break readings
		}
		var sum time.Duration
		for pid, c0 := range cpu0 {
			c1, ok := cpu[pid]
			if !ok {
				break readings
			}
			sum += c1 - c0
		}
		s.cpu, s.txs, last = sum, txs-txs0, time.Now()
	}
	if window := last.Sub(start); window < d/3 {
		return cpuSample{err: fmt.Errorf("readings over %s of a %s run only", window.Round(time.Millisecond), d)}
	}
	return s
}

// pgbenchPIDs returns the pids of the backends of pgbench's connections to
// the run's database.
func (e *env) pgbenchPIDs(ctx context.Context) ([]int32, error) {
	rows, err := e.pool.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'pgbench'`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int32])
}

// readBackendCPU returns the CPU time each of pgbench's backends on the
// run's database has used so far, by pid, and the id sequence's last value.
func (e *env) readBackendCPU(ctx context.Context) (map[int]time.Duration, int64, error) {
	pids, err := e.pgbenchPIDs(ctx)
	if err != nil {
		return nil, 0, err
	}
	cpu := map[int]time.Duration{}
	for _, pid := range pids {
		// A backend shows its database in its command line
		// ("postgres: … user database host(port) …").
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmd), " "+e.dbName+" ") {
			return nil, 0, fmt.Errorf("backend %d is not a process of this machine serving %s (a server on another machine, or with update_process_title off?)",
				pid, e.dbName)
		}
		if cpu[int(pid)], err = procCPU(int(pid)); err != nil {
			return nil, 0, fmt.Errorf("backend %d: %w", pid, err)
		}
	}
	var txs int64
	err = e.pool.QueryRow(ctx, "SELECT last_value FROM "+pgx.Identifier{e.schema, filterSequence}.Sanitize()).Scan(&txs)
	return cpu, txs, err
}
