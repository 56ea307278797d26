package amqp_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	amqpsink "github.com/pgrelay/pgrelay/handlers/amqp"
	"github.com/pgrelay/pgrelay/relay"
)

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  amqpsink.Config
		err  string // "" for valid
	}{
		{"minimal", amqpsink.Config{URL: "amqp://localhost"}, ""},
		{"tls and vhost", amqpsink.Config{URL: "amqps://u:p@mq.example:5671/prod", Exchange: "cdc", Timeout: time.Second}, ""},
		{"no URL", amqpsink.Config{}, "Config.URL is required"},
		{"other scheme", amqpsink.Config{URL: "http://u:secret@localhost"}, "Config.URL http://u:xxxxx@localhost: the scheme is not amqp or amqps"},
		{"no host", amqpsink.Config{URL: "amqp:///vhost"}, "Config.URL amqp:///vhost: no host"},
		{"unparsable", amqpsink.Config{URL: "amqp://u:secret@localhost:port/"}, "Config.URL: unparsable URL"},
		{"negative timeout", amqpsink.Config{URL: "amqp://localhost", Timeout: -time.Second}, "Config.Timeout -1s is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := amqpsink.New(tc.cfg)
			if tc.err == "" {
				require.NoError(t, err)
				require.NotNil(t, h)
				return
			}
			require.ErrorContains(t, err, tc.err)
			require.NotContains(t, err.Error(), "secret")
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	h, err := amqpsink.New(amqpsink.Config{URL: "amqp://localhost"})
	require.NoError(t, err)
	cfg := h.Config()
	require.Equal(t, amqpsink.DefaultExchange, cfg.Exchange)
	require.Equal(t, "pgrelay", cfg.Exchange)
	require.Equal(t, 5*time.Second, cfg.Timeout)
	require.Equal(t, "s.t.update", cfg.RoutingKey(&relay.Event{Schema: "s", Table: "t", Action: relay.ActionUpdate}))
	require.Equal(t, "orders.shipped", cfg.RoutingKey(&relay.Event{Action: relay.ActionMessage, CustomChannel: "orders.shipped"}))
}

func TestConfigFromURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw, url, exchange, err string
	}{
		{raw: "amqp://guest:guest@host:5672/?exchange=cdc", url: "amqp://guest:guest@host:5672/", exchange: "cdc"},
		{raw: "amqps://u:p@host/vh?heartbeat=5&exchange=x.y", url: "amqps://u:p@host/vh?heartbeat=5", exchange: "x.y"},
		{raw: "amqp://host", url: "amqp://host"},
		{raw: "amqp://u:secret@host/?exchange=", err: "amqp sink amqp://u:xxxxx@host/?exchange=: exchange is empty"},
		{raw: "redis://u:secret@host/?exchange=x", err: "the scheme is not amqp or amqps"},
		{raw: "amqp://u:secret@host:x/", err: "unparsable URL"},
	} {
		cfg, err := amqpsink.ConfigFromURL(tc.raw)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.raw)
			require.NotContains(t, err.Error(), "secret")
			continue
		}
		require.NoError(t, err, tc.raw)
		require.Equal(t, tc.url, cfg.URL, tc.raw)
		require.Equal(t, tc.exchange, cfg.Exchange, tc.raw)
	}
}

// TestConnectErrorHidesThePassword: a broker that refuses the credentials,
// or cannot be reached, is reported with the URL, never the password.
func TestConnectErrorHidesThePassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, url := range []string{
		"amqp://guest:not-the-password-s3cret@127.0.0.1:5672/",
		"amqp://guest:s3cret@127.0.0.1:1/",
	} {
		h := newHandler(t, amqpsink.Config{URL: url, Timeout: 2 * time.Second})
		err := h.OnStart(ctx)
		require.Error(t, err, url)
		require.Contains(t, err.Error(), "127.0.0.1")
		require.NotContains(t, err.Error(), "s3cret")
		require.Error(t, h.OnEvents(ctx, events(1, 1)))
	}
}
