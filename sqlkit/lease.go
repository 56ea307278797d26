package sqlkit

// Leadership among the relays that share a name.
//
// The active relay holds a lease on its row of cdc.relay_cursor: a holder,
// a token and an expiry. It renews the expiry every watchdog interval; a
// standby tries to take the lease every retry interval and succeeds once the
// lease has expired, or at once when none of the holder's registered
// backends is left (its process died and the server noticed). Taking the
// lease increments the token, and the holder writes its cursor, parks events
// and prunes only where the token is still its own (SaveProgress, Prune):
// a relay partitioned from the database that comes back after a standby took
// over finds its token gone at its first write and steps down, having moved
// nothing. Because the takeover and the holder's write update the same row,
// PostgreSQL orders them: a save either commits before the takeover, and the
// new holder loads it, or finds the new token and changes nothing.
//
// Nothing of this depends on a server-side session: a backend whose client
// vanished behind a partition holds no lease, and cannot hold a row lock for
// long either: the server ends the relay's transactions left idle
// (SaveProgress, SetupSession).

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var (
	sqlSessionSetup      = query("session_setup")
	sqlBackendOf         = query("backend_of")
	sqlInstanceRegister  = query("instance_register")
	sqlLeaseAcquire      = query("lease_acquire")
	sqlLeaseState        = query("lease_state")
	sqlLeaseLockTimeout  = query("lease_lock_timeout")
	sqlLeaseRenew        = query("lease_renew")
	sqlLeaseRelease      = query("lease_release")
	sqlInstanceBackends  = query("instance_backends")
	sqlTerminateBackends = query("terminate_backends")
	sqlRelayInstances    = query("relay_instances")
)

// ErrLeaseLost is returned by the writes of a lease holder (SaveProgress,
// RenewLease, Prune) once another relay has taken its lease: it must stop
// delivering and stand by.
var ErrLeaseLost = errors.New("another relay took over the lease")

// Lease is a relay's hold on delivery for its name.
type Lease struct {
	// Name is the relay name (cdc.relay_cursor.name).
	Name string
	// Token identifies this holding; writes carry it (fencing).
	Token int64
	// Since is when the holder became active; a reconnect that renewed
	// the lease before it expired keeps it.
	Since time.Time
	// Previous is the instance that held the lease before, when it was
	// another one; empty otherwise.
	Previous string
}

// Backend identifies a server process: its pid and start time, so that a
// later backend reusing the pid is not mistaken for it.
type Backend struct {
	PID     uint32
	Started time.Time
}

// SetupSession prepares one of a relay's own connections (not one through a
// connection pooler in transaction mode, where session settings would stick
// to server connections that other clients use): a transaction left idle
// for longer than timeout is ended by the server, and the server's TCP
// keepalive and user timeout are set from timeout, so that PostgreSQL drops
// a vanished client about as fast as the relay notices a vanished server.
func SetupSession(ctx context.Context, conn *pgx.Conn, timeout time.Duration) error {
	ms := max(timeout.Milliseconds(), 1)
	secs := max((ms+999)/1000, 1) // the keepalive settings count whole seconds
	_, err := conn.Exec(ctx, sqlSessionSetup,
		strconv.FormatInt(ms, 10),
		strconv.FormatInt(secs, 10),
		strconv.FormatInt(max(secs/3, 1), 10),
		"3",
		strconv.FormatInt(ms, 10),
	)
	if err != nil {
		return fmt.Errorf("set up session: %w", err)
	}
	return nil
}

// BackendOf returns conn's backend.
func BackendOf(ctx context.Context, conn *pgx.Conn) (Backend, error) {
	var (
		b       Backend
		started *time.Time
	)
	if err := conn.QueryRow(ctx, sqlBackendOf).Scan(&b.PID, &started); err != nil {
		return Backend{}, fmt.Errorf("identify backend: %w", err)
	}
	if started != nil {
		b.Started = *started
	}
	return b, nil
}

// Instance describes a running relay, as registered in cdc.relay_instance.
type Instance struct {
	// Name is the relay name it delivers, or stands by, for.
	Name string
	// ID tells this relay from the others of its name.
	ID string
	// Host and PID locate its process.
	Host string
	PID  int
	// Backends are its current connections' server processes.
	Backends []Backend
	// Direct says LISTEN works on its connections: no connection pooler
	// in between, so the backends are its own and may be ended.
	Direct bool
}

// registerArgs are instance_register.sql's arguments for inst, valid for ttl.
func registerArgs(inst Instance, ttl time.Duration) []any {
	pids := make([]int64, len(inst.Backends))
	starts := make([]time.Time, len(inst.Backends))
	for i, be := range inst.Backends {
		pids[i], starts[i] = int64(be.PID), be.Started
	}
	return []any{inst.Name, inst.ID, inst.Host, inst.PID, pids, starts, inst.Direct, ttl}
}

// Register records inst as running for ttl, without touching any lease.
func Register(ctx context.Context, db DB, inst Instance, ttl time.Duration) error {
	if _, err := db.Exec(ctx, sqlInstanceRegister, registerArgs(inst, ttl)...); err != nil {
		return fmt.Errorf("register relay instance: %w", err)
	}
	return nil
}

// Heartbeat refreshes inst's registration and, when lease is not nil,
// renews it for ttl, then sends notify on NotifyChannel (the watchdog's
// probe), all in one round trip. A lease taken over by another relay makes
// it return ErrLeaseLost.
func Heartbeat(ctx context.Context, conn *pgx.Conn, inst Instance, lease *Lease, ttl time.Duration, notify string) error {
	var b pgx.Batch
	b.Queue(sqlInstanceRegister, registerArgs(inst, ttl)...)
	var renewed int64 = 1
	if lease != nil {
		b.Queue(sqlLeaseRenew, lease.Name, lease.Token, ttl).
			Exec(func(tag pgconn.CommandTag) error { renewed = tag.RowsAffected(); return nil })
	}
	b.Queue(sqlNotify, notify)
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	if renewed == 0 {
		return fmt.Errorf("renew lease %q: %w", lease.Name, ErrLeaseLost)
	}
	return nil
}

// LeaseState is a lease as a standby sees it.
type LeaseState struct {
	// Holder is the instance holding the lease, empty when none ever did.
	Holder string
	// ExpiresAt is when it expires, unless renewed.
	ExpiresAt time.Time
	// Free: it may be taken now (AcquireLease decides again).
	Free bool
}

// ReadLease returns the state of name's lease without locking anything.
func ReadLease(ctx context.Context, db DB, name string) (LeaseState, error) {
	var (
		st      = LeaseState{Free: true}
		holder  *string
		expires *time.Time
	)
	err := db.QueryRow(ctx, sqlLeaseState, name).Scan(&holder, &expires, &st.Free)
	if errors.Is(err, pgx.ErrNoRows) {
		return LeaseState{Free: true}, nil
	}
	if err != nil {
		return LeaseState{}, fmt.Errorf("read lease %q: %w", name, err)
	}
	if holder != nil {
		st.Holder = *holder
	}
	if expires != nil {
		st.ExpiresAt = *expires
	}
	return st, nil
}

// AcquireLease tries to make instance the holder of name's lease for ttl:
// it succeeds when the lease is free, expired, already instance's, or held
// by a relay with no backend left. prev is instance's previous hold, if
// any: when it was renewed without a break, Since is kept. ok is false when
// another relay holds the lease. When the lease's row stays locked for
// lockWait, it returns ErrLeaseRowLocked.
func AcquireLease(ctx context.Context, conn *pgx.Conn, name, instance string, ttl, lockWait time.Duration, prev Lease) (l Lease, ok bool, err error) {
	var (
		b        pgx.Batch
		previous *string
	)
	l.Name = name
	b.Queue("BEGIN")
	b.Queue(sqlLeaseLockTimeout, strconv.FormatInt(max(lockWait.Milliseconds(), 1), 10))
	b.Queue(sqlLeaseAcquire, name, instance, ttl, prev.Token).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&l.Token, &l.Since, &previous)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // another relay holds it
		}
		ok = err == nil
		return err
	})
	b.Queue("COMMIT")
	err = conn.SendBatch(ctx, &b).Close()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == lockNotAvailable {
		return Lease{}, false, ErrLeaseRowLocked
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("acquire lease %q: %w", name, err)
	}
	if !ok {
		return Lease{}, false, nil
	}
	if previous != nil && *previous != instance {
		l.Previous = *previous
	}
	return l, true, nil
}

// ErrLeaseRowLocked is returned by AcquireLease when the lease's row stayed
// locked: by a backend of the previous holder, typically, cut off in the
// middle of a batch, where the server arms no idle timeout. End it and try
// again.
var ErrLeaseRowLocked = errors.New("the lease's row is locked by another session")

// lockNotAvailable is the SQLSTATE of a lock wait that hit lock_timeout.
const lockNotAvailable = "55P03"

// ReleaseLease unregisters instance and, if it still holds lease, lets the
// lease expire now, so that a standby takes over without waiting.
func ReleaseLease(ctx context.Context, db DB, instance string, lease Lease) error {
	if _, err := db.Exec(ctx, sqlLeaseRelease, lease.Name, instance, lease.Token); err != nil {
		return fmt.Errorf("release lease %q: %w", lease.Name, err)
	}
	return nil
}

// InstanceBackends returns the backends that relay instance of name last
// registered, and whether they are its own (see Instance.Direct).
func InstanceBackends(ctx context.Context, db DB, name, instance string) ([]Backend, bool, error) {
	var (
		pids   []int64
		starts []time.Time
		direct bool
	)
	err := db.QueryRow(ctx, sqlInstanceBackends, name, instance).Scan(&pids, &starts, &direct)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read backends of relay instance %s: %w", instance, err)
	}
	bs := make([]Backend, min(len(pids), len(starts)))
	for i := range bs {
		bs[i] = Backend{PID: uint32(pids[i]), Started: starts[i]}
	}
	return bs, direct, nil
}

// TerminateBackends ends those of backends that are still running and that
// the connected role may end (its own role's, or any with
// pg_signal_backend; a superuser's only as a superuser), and returns how
// many it signalled.
func TerminateBackends(ctx context.Context, db DB, backends []Backend) (int, error) {
	if len(backends) == 0 {
		return 0, nil
	}
	pids := make([]int64, len(backends))
	starts := make([]time.Time, len(backends))
	for i, b := range backends {
		pids[i], starts[i] = int64(b.PID), b.Started
	}
	var n int
	if err := db.QueryRow(ctx, sqlTerminateBackends, pids, starts).Scan(&n); err != nil {
		return 0, fmt.Errorf("end abandoned backends: %w", err)
	}
	return n, nil
}

// InstanceStatus is one running relay of a name, as `relay status` shows it.
type InstanceStatus struct {
	ID        string    `json:"instance"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
	SeenAt    time.Time `json:"seen_at"`
	// Running: it refreshed its registration lately. The lease holder is
	// listed even when it did not.
	Running bool `json:"running"`
	// Active: it holds the unexpired lease, and delivers.
	Active bool `json:"active"`
	// ActiveSince, RenewedAt and ExpiresAt describe the lease, for the
	// active instance only.
	ActiveSince *time.Time `json:"active_since,omitempty"`
	RenewedAt   *time.Time `json:"lease_renewed_at,omitempty"`
	ExpiresAt   *time.Time `json:"lease_expires_at,omitempty"`
}

// RelayInstances lists the relays of name that are running (registered and
// not expired), and the lease holder in any case, the active one first.
func RelayInstances(ctx context.Context, db DB, name string) ([]InstanceStatus, error) {
	rows, err := db.Query(ctx, sqlRelayInstances, name)
	if err != nil {
		return nil, fmt.Errorf("list relay instances: %w", err)
	}
	var out []InstanceStatus
	for rows.Next() {
		var s InstanceStatus
		var since, renewed, expires *time.Time
		if err := rows.Scan(&s.ID, &s.Host, &s.PID, &s.StartedAt, &s.SeenAt, &s.Running, &s.Active, &since, &renewed, &expires); err != nil {
			return nil, fmt.Errorf("list relay instances: %w", err)
		}
		if s.Active {
			s.ActiveSince, s.RenewedAt, s.ExpiresAt = since, renewed, expires
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list relay instances: %w", err)
	}
	return out, nil
}
