package sqlkit

import (
	"context"
	"encoding/json"
	"fmt"
)

var sqlPublish = query("publish")

// ActionMessage is the action of the events Publish writes.
const ActionMessage = "message"

// Publish writes a custom event into the outbox in db's transaction (pass
// the pgx.Tx of the application's own transaction): it is delivered if and
// only if that transaction commits, in order with its row events, on
// channel as
//
//	{"event_id":…,"txid":…,"timestamp":…,"action":"message","channel":…,"data":<payload>}
//
// payload is marshalled with encoding/json; a json.RawMessage is used as it
// is. channel must be 1 to MaxChannelBytes bytes. The role needs EXECUTE on
// cdc.publish(text, jsonb), which PUBLIC does not have.
func Publish(ctx context.Context, db DB, channel string, payload any) error {
	var data []byte
	if raw, ok := payload.(json.RawMessage); ok {
		data = raw
	} else {
		var err error
		if data, err = json.Marshal(payload); err != nil {
			return fmt.Errorf("publish on %q: marshal the payload: %w", channel, err)
		}
	}
	if _, err := db.Exec(ctx, sqlPublish, channel, string(data)); err != nil {
		return fmt.Errorf("publish on %q: %w", channel, err)
	}
	return nil
}
