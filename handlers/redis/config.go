package redis

import (
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/pgrelay/pgrelay/relay"
)

// Mode chooses what the handler writes for each event.
type Mode string

// The modes. See the README's "Pub/sub or streams" for when to pick each.
const (
	// ModePubSub PUBLISHes each event on its channel: delivered to the
	// subscribers connected at that moment, kept nowhere.
	ModePubSub Mode = "pubsub"
	// ModeStream appends each event to the stream named like its channel,
	// exactly once (see stream.go), where consumers read it at their own
	// pace, after restarts too.
	ModeStream Mode = "stream"
	// ModeBoth appends to the stream and publishes, in one step per stream,
	// so both carry the same events in the same order.
	ModeBoth Mode = "both"
)

// PubSub chooses the publish command.
type PubSub string

// The publish commands.
const (
	// PubSubAuto is PubSubSharded on a Redis Cluster client and
	// PubSubClassic otherwise.
	PubSubAuto PubSub = ""
	// PubSubClassic uses PUBLISH: on a cluster every node relays every
	// message to its subscribers.
	PubSubClassic PubSub = "classic"
	// PubSubSharded uses SPUBLISH (Redis 7+): a channel lives on the shard
	// of its name's hash slot, so pub/sub scales with the cluster.
	// Subscribers use SSUBSCRIBE.
	PubSubSharded PubSub = "sharded"
)

// DefaultStreamMaxLen is the default Config.StreamMaxLen.
const DefaultStreamMaxLen = 1_000_000

// Config configures a Handler. Zero values mean the documented defaults.
type Config struct {
	// Client is the Redis connection: a *goredis.Client, or a
	// *goredis.ClusterClient for Redis Cluster. Required. The caller keeps
	// ownership and closes it after the relay has stopped.
	Client goredis.UniversalClient

	// Mode is what is written for each event. Defaults to ModePubSub.
	Mode Mode

	// PubSub is the publish command of ModePubSub and ModeBoth. Defaults
	// to PubSubAuto.
	PubSub PubSub

	// StreamMaxLen trims each stream to about this many entries as it is
	// appended to (XADD MAXLEN ~): at least StreamMaxLen entries are kept,
	// a few more until Redis can drop a whole node of them. Negative never
	// trims. Defaults to DefaultStreamMaxLen (1,000,000).
	StreamMaxLen int64

	// Channel names the channel and stream of an event. Defaults to
	// (*relay.Event).Channel, "<schema>.<table>.cdc_events". On a cluster
	// the stream's bookkeeping key is put in the same hash slot as the
	// stream, which needs a name without braces or with a valid hash tag.
	Channel func(*relay.Event) string

	// defaultChannel: Channel was left to its default, whose names the
	// handler may reuse (Handler.sameChannel).
	defaultChannel bool
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModePubSub
	}
	if c.PubSub == PubSubAuto {
		c.PubSub = PubSubClassic
		if _, ok := c.Client.(*goredis.ClusterClient); ok {
			c.PubSub = PubSubSharded
		}
	}
	if c.StreamMaxLen == 0 {
		c.StreamMaxLen = DefaultStreamMaxLen
	}
	if c.Channel == nil {
		c.Channel, c.defaultChannel = (*relay.Event).Channel, true
	}
	return c
}

// validate names the first field that is wrong.
func (c Config) validate() error {
	if c.Client == nil {
		return errors.New("redis handler: Config.Client is required")
	}
	switch c.Mode {
	case "", ModePubSub, ModeStream, ModeBoth:
	default:
		return fmt.Errorf("redis handler: Config.Mode %q is not one of pubsub, stream, both", c.Mode)
	}
	switch c.PubSub {
	case PubSubAuto, PubSubClassic, PubSubSharded:
	default:
		return fmt.Errorf("redis handler: Config.PubSub %q is not one of classic, sharded", c.PubSub)
	}
	return nil
}

// ParseMode reads a mode as the command line gives it.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModePubSub, ModeStream, ModeBoth:
		return m, nil
	}
	return "", fmt.Errorf("redis mode %q is not one of pubsub, stream, both", s)
}

// ParsePubSub reads a publish command as the command line gives it.
func ParsePubSub(s string) (PubSub, error) {
	switch p := PubSub(s); p {
	case PubSubClassic, PubSubSharded:
		return p, nil
	case "auto":
		return PubSubAuto, nil
	}
	return "", fmt.Errorf("redis pub/sub %q is not one of classic, sharded", s)
}
