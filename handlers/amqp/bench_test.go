package amqp_test

import (
	"testing"

	amqpsink "github.com/pgrelay/pgrelay/handlers/amqp"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// BenchmarkOnEvents publishes batches of 1000 events (the relay's default
// batch size) to a durable queue on the shared broker and waits for their
// confirms, as the relay does; events/s is the sink's throughput.
func BenchmarkOnEvents(b *testing.B) {
	ctx := testenv.Context(b)
	url := brokerURL()
	ch, exchange, queue := topology(b, url, "#", nil)
	h := newHandler(b, amqpsink.Config{URL: url, Exchange: exchange})
	batch := events(1, 1000)
	dctx := relay.WithDelivery(ctx, relay.Delivery{Name: "bench", Token: 1})
	if err := h.OnStart(ctx); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := h.OnEvents(dctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
	b.StopTimer()
	// Keep the shared broker's queue short between rounds.
	if _, err := ch.QueuePurge(queue, false); err != nil {
		b.Fatal(err)
	}
}
