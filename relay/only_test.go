package relay_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/relay"
)

// batchRecorder records what it is given, by batch, and its checkpoints.
type batchRecorder struct {
	relay.BaseHandler
	batches     [][]int64
	checkpoints int
}

func (b *batchRecorder) OnEvents(_ context.Context, events []relay.Event) error {
	var ids []int64
	for _, e := range events {
		ids = append(ids, e.ID)
	}
	b.batches = append(b.batches, ids)
	return nil
}

func (b *batchRecorder) Checkpoint(relay.Delivery) { b.checkpoints++ }

func TestOnly(t *testing.T) {
	t.Parallel()
	events := []relay.Event{
		{ID: 1, Schema: "public", Table: "users", Action: relay.ActionInsert},
		{ID: 2, Schema: "public", Table: "users", Action: relay.ActionUpdate},
		{ID: 3, Schema: "shop", Table: "orders", Action: relay.ActionInsert},
		{ID: 4, Action: relay.ActionMessage, CustomChannel: "orders.shipped"},
		{ID: 5, Schema: "public", Table: "users", Action: relay.ActionDelete},
	}
	for _, tc := range []struct {
		name    string
		filters []relay.Filter
		want    []int64
	}{
		{"none", nil, []int64{1, 2, 3, 4, 5}},
		{"a bare table is in public", []relay.Filter{relay.Tables("users")}, []int64{1, 2, 5}},
		{"tables", []relay.Filter{relay.Tables("shop.orders", "public.users")}, []int64{1, 2, 3, 5}},
		{"actions", []relay.Filter{relay.Actions(relay.ActionInsert, relay.ActionDelete)}, []int64{1, 3, 5}},
		{"all must pass", []relay.Filter{relay.Tables("public.users"), relay.Actions(relay.ActionInsert)}, []int64{1}},
		{"channels", []relay.Filter{relay.Channels("orders.shipped", "shop.orders.cdc_events")}, []int64{3, 4}},
		{"messages by action", []relay.Filter{relay.Actions(relay.ActionMessage)}, []int64{4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One by one.
			var got []int64
			h := relay.Only(relay.HandlerFunc(func(_ context.Context, e relay.Event) error {
				got = append(got, e.ID)
				return nil
			}), tc.filters...)
			for _, e := range events {
				require.NoError(t, h.OnEvent(context.Background(), e))
			}
			require.Equal(t, tc.want, got)

			// As a batch, to a batch handler.
			rec := &batchRecorder{}
			bh, ok := relay.Only(rec, tc.filters...).(relay.BatchHandler)
			require.True(t, ok, "a batch handler stays one")
			require.NoError(t, bh.OnEvents(context.Background(), events))
			require.Equal(t, [][]int64{tc.want}, rec.batches)
			bh.(relay.CheckpointHandler).Checkpoint(relay.Delivery{})
			require.Equal(t, 1, rec.checkpoints, "checkpoints are passed on")
		})
	}
}
