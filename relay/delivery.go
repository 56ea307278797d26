package relay

import "context"

// Delivery describes who hands a batch to a handler: the relay's Name and
// the lease token under which it delivers. Tokens grow with every takeover,
// so a sink that records the highest token it has seen can refuse writes
// from a relay that lost its lease without knowing it yet (fencing): the
// Redis stream handler does.
type Delivery struct {
	// Name is the relay's Config.Name.
	Name string
	// Token is the lease token of the delivering relay; larger is newer.
	Token int64
}

type deliveryKey struct{}

// WithDelivery returns ctx carrying d. The relay does this for every batch
// it hands out; tests of a sink, or code that feeds one itself, can too.
func WithDelivery(ctx context.Context, d Delivery) context.Context {
	return context.WithValue(ctx, deliveryKey{}, d)
}

// DeliveryOf returns the Delivery of the batch a handler is being given:
// the context of OnEvent and OnEvents carries it. ok is false outside a
// relay's delivery (a handler called directly, as in tests).
func DeliveryOf(ctx context.Context) (d Delivery, ok bool) {
	d, ok = ctx.Value(deliveryKey{}).(Delivery)
	return d, ok
}

// CheckpointHandler is implemented by handlers that keep state about events
// that may be handed to them again, such as the Redis stream handler, which
// remembers what it appended so that a replay after a crash appends nothing
// twice.
//
// The relay calls Checkpoint after it has recorded in PostgreSQL that every
// event it handed to this handler so far was delivered: from then on neither
// this relay nor any other of the same Name (d.Name) hands those events out
// again, so the handler may forget them. Checkpoint must not block: record the
// fact and act on it with the next batch.
type CheckpointHandler interface {
	Checkpoint(d Delivery)
}

// checkpoint tells the handlers that implement CheckpointHandler that all
// they were handed is recorded as delivered.
func checkpoint(handlers []EventHandler, d Delivery) {
	for _, h := range handlers {
		if c, ok := h.(CheckpointHandler); ok {
			c.Checkpoint(d)
		}
	}
}
