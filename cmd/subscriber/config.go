package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pgrelay/pgrelay/relay"
	"github.com/pgrelay/pgrelay/route"
)

// Output formats, the values of --format.
const (
	formatJSON   = "json"
	formatPretty = "pretty"
)

// Pub/sub kinds, the values of --pubsub.
const (
	pubsubSharded = "sharded"
	pubsubClassic = "classic"
)

// config is what the command line asks for, checked and resolved, before
// anything connects.
type config struct {
	// redisURL is --redis-url as given; cluster reads it as a cluster URL.
	redisURL string
	cluster  bool

	// names are the channels or streams to read, resolved with
	// route.Resolve and without repeats, in the order given; patterns are
	// the names with glob characters (pub/sub only, classic only).
	names, patterns []string
	// customs are the names given that may also be the channels of custom
	// events (dotted, such as orders.shipped: route.Candidates), verbatim.
	customs []string

	// stream selects Redis Streams instead of pub/sub. from is where a
	// stream read starts, or where a new consumer group starts; fromSet
	// says whether --from was given. group and consumer name the consumer
	// group and this reader in it; group is empty without one.
	stream          bool
	from            string
	fromSet         bool
	group, consumer string

	// sharded selects SSUBSCRIBE over SUBSCRIBE/PSUBSCRIBE.
	sharded bool

	// count is how many events to print before exiting, 0 for no limit.
	count int
	// actions keeps only the events of these actions; nil keeps all.
	actions map[relay.Action]bool
	// pretty selects the readable format over JSON lines; color adds ANSI
	// colours to it.
	pretty, color bool
}

// parseConfig checks the flags and arguments of c. Every mistake is one
// error naming the flag and what it accepts.
func parseConfig(c *cli.Context) (*config, error) {
	cfg := &config{
		redisURL: c.String("redis-url"),
		cluster:  c.Bool("cluster"),
		stream:   c.Bool("stream"),
		from:     c.String("from"),
		fromSet:  c.IsSet("from"),
		group:    c.String("group"),
		consumer: c.String("consumer"),
		count:    c.Int("count"),
	}
	if !cfg.stream {
		for _, f := range []string{"from", "group", "consumer"} {
			if c.IsSet(f) {
				return nil, fmt.Errorf("--%s only applies with --stream", f)
			}
		}
	}
	if cfg.consumer != "" && cfg.group == "" {
		return nil, errors.New("--consumer only applies with --group")
	}
	if cfg.count < 0 {
		return nil, fmt.Errorf("--count %d: want a number of events, or 0 for no limit", cfg.count)
	}
	var err error
	if cfg.actions, err = parseActions(c.StringSlice("actions")); err != nil {
		return nil, err
	}
	if cfg.pretty, err = parseFormat(c.String("format"), c.App.Writer); err != nil {
		return nil, err
	}
	cfg.color = cfg.pretty && isTerminal(c.App.Writer) && os.Getenv("NO_COLOR") == ""

	args := c.Args().Slice()
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			return nil, fmt.Errorf("%s after a name: flags go before the names", a)
		}
	}
	if len(args) == 0 {
		if env := os.Getenv("CHANNEL"); env != "" {
			args = strings.Split(env, ",")
		}
	}
	cfg.names, cfg.patterns = resolveNames(args)
	cfg.customs = customChannels(args)
	if cfg.stream {
		return cfg, cfg.checkStream(c.IsSet("pubsub"))
	}
	return cfg, cfg.checkPubSub(c.String("pubsub"))
}

// checkStream completes and checks the stream settings of cfg.
func (cfg *config) checkStream(pubsubSet bool) error {
	if pubsubSet {
		return errors.New("--pubsub applies to pub/sub, not to --stream")
	}
	if len(cfg.patterns) > 0 {
		return fmt.Errorf("a stream cannot be read by pattern (%s): name each table or stream", cfg.patterns[0])
	}
	if len(cfg.names) == 0 {
		return errors.New("--stream needs the tables or streams to read, for example: subscriber --stream public.users")
	}
	if !validStreamID(cfg.from) {
		return fmt.Errorf("--from %q: want 0 (the start), $ (new entries only) or an entry ID such as 1700000000000-0", cfg.from)
	}
	if cfg.group != "" && cfg.consumer == "" {
		cfg.consumer = defaultConsumer()
	}
	return nil
}

// checkPubSub completes and checks the pub/sub settings of cfg; kind is
// --pubsub, empty for the default.
func (cfg *config) checkPubSub(kind string) error {
	switch kind {
	case "":
		cfg.sharded = cfg.cluster
	case pubsubSharded, pubsubClassic:
		cfg.sharded = kind == pubsubSharded
	default:
		return fmt.Errorf("unknown --pubsub %q: want sharded or classic", kind)
	}
	if len(cfg.names) == 0 && len(cfg.patterns) == 0 {
		cfg.patterns = []string{route.All}
	}
	if cfg.sharded && len(cfg.patterns) > 0 {
		return fmt.Errorf("sharded pub/sub has no patterns (%s): name each table, or add --pubsub classic "+
			"(which receives only what the relay PUBLISHes, not SPUBLISHes)", cfg.patterns[0])
	}
	return nil
}

// resolveNames turns the names the user typed into channel or stream names
// with route.Resolve, sorted into plain names and patterns, each once and in
// the order given. Empty names are skipped.
func resolveNames(args []string) (names, patterns []string) {
	for _, a := range args {
		if strings.TrimSpace(a) == "" {
			continue
		}
		dest, pattern := route.Resolve(a)
		list := &names
		if pattern {
			list = &patterns
		}
		if !slices.Contains(*list, dest) {
			*list = append(*list, dest)
		}
	}
	return names, patterns
}

// customChannels returns the names in args that may also name a custom
// events' channel (the second of route.Candidates), each once.
func customChannels(args []string) []string {
	var out []string
	for _, a := range args {
		if c := route.Candidates(a); len(c) > 1 && !slices.Contains(out, c[1]) {
			out = append(out, c[1])
		}
	}
	return out
}

// knownActions are the actions --actions accepts, in the order help lists
// them.
var knownActions = []relay.Action{relay.ActionInsert, relay.ActionUpdate, relay.ActionDelete, relay.ActionTruncate, relay.ActionMessage}

// parseActions reads --actions: names separated by commas, or the flag
// repeated, in any case. It returns nil (keep every event) when the flag was
// not given.
func parseActions(values []string) (map[relay.Action]bool, error) {
	if len(values) == 0 {
		return nil, nil
	}
	keep := map[relay.Action]bool{}
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			a := relay.Action(name)
			if !slices.Contains(knownActions, a) {
				return nil, fmt.Errorf("unknown action %q in --actions: want insert, update, delete, truncate or message", name)
			}
			keep[a] = true
		}
	}
	if len(keep) == 0 {
		return nil, errors.New("--actions names no action: want insert, update, delete, truncate or message, separated by commas")
	}
	return keep, nil
}

// parseFormat reads --format: json, pretty, or empty for pretty on a
// terminal and JSON lines otherwise. It reports whether to print pretty.
func parseFormat(format string, stdout io.Writer) (bool, error) {
	switch format {
	case "":
		return isTerminal(stdout), nil
	case formatJSON:
		return false, nil
	case formatPretty:
		return true, nil
	}
	return false, fmt.Errorf("unknown --format %q: want json or pretty", format)
}

// streamIDPattern matches an explicit stream entry ID: milliseconds, and
// optionally a sequence number.
var streamIDPattern = regexp.MustCompile(`^[0-9]+(-[0-9]+)?$`)

// validStreamID reports whether id is a --from value: $ or an entry ID
// (0 being the smallest).
func validStreamID(id string) bool {
	return id == "$" || streamIDPattern.MatchString(id)
}

// defaultConsumer is the consumer name used without --consumer: the host
// name, so that a subscriber restarted on the same machine is the same
// consumer and takes up its own pending entries.
func defaultConsumer() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "subscriber"
}

// isTerminal reports whether w is a terminal (a character device), without
// a dependency beyond os.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
