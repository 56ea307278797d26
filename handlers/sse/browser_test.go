package sse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/handlers/sse"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// browser is a headless Chromium tab, driven with chromedp.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// startChromium starts Debian's chromium headless, or skips the test when
// it is not installed. Chromium and its profile go when the test ends.
func startChromium(t *testing.T) *browser {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium): skipping the browser test")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // tests may run as root, where Chromium's sandbox refuses to start
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // ends Chromium and removes its profile
	})
	// Chromium starts with the first actions run on ctx and lives as long
	// as their context: start it here, on ctx itself, not on the shorter
	// contexts that bound each step.
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	return &browser{t: t, ctx: ctx}
}

// run runs chromedp actions, bounded by the tests' wait.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, wait)
	defer cancel()
	require.NoError(b.t, chromedp.Do(ctx, actions...), what)
}

// eval returns the value of a JavaScript expression in the page.
func (b *browser) eval(js string) any {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, wait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[any](js))
	require.NoError(b.t, err, js)
	return v
}

// until waits for a JavaScript condition to hold; an exception (the page
// may not be there yet) counts as false.
func (b *browser) until(js string) {
	b.t.Helper()
	try := "(() => { try { return " + js + " } catch (e) { return false } })()"
	b.run(js, chromedp.Poll[chromedp.Void](try, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(wait)))
}

// TestPageInChromium opens the page in a headless Chromium: it connects
// with the page's token, filters by table and action, shows events live,
// pauses, and expands an event to show its changes.
func TestPageInChromium(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	b := startChromium(t)
	h, srv := newHandler(t, newPool(t), sse.Config{Token: "tok"})

	b.run("open the page", chromedp.Navigate(srv.URL+"/?token=tok"))
	b.until(`document.getElementById("status").dataset.opens === "1"`)
	b.eval(`document.getElementById("tables").value = "public.users";
		document.querySelector("input[value=update]").click();
		document.getElementById("watch").click(); true`)
	b.until(`document.getElementById("status").dataset.opens === "2"`)
	require.Eventually(t, func() bool { return h.Clients() == 1 }, wait, 10*time.Millisecond)

	upd := events(1, 1, "public.users", relay.ActionUpdate)[0]
	upd.Changes = json.RawMessage(`[{"field":"name","old":"a","new":"zed"}]`)
	batch := []relay.Event{upd}
	batch = append(batch, events(2, 1, "public.items", relay.ActionUpdate)...)
	batch = append(batch, events(3, 1, "public.users", relay.ActionInsert)...)
	batch = append(batch, events(4, 1, "public.users", relay.ActionUpdate)...)
	require.NoError(t, h.OnEvents(ctx, batch))
	b.until(`document.querySelectorAll("#events li").length === 2`)
	// Newest first: position 4, then 1; items and the insert filtered out.
	assert.Equal(t, "update#4 public.users id 4", b.eval(`document.querySelector("#events li div").textContent`))

	b.eval(`document.getElementById("pause").click(); true`)
	require.NoError(t, h.OnEvents(ctx, events(5, 1, "public.users", relay.ActionUpdate)))
	b.until(`document.getElementById("status").textContent.includes("paused (1 held)")`)
	assert.Equal(t, 2.0, b.eval(`document.querySelectorAll("#events li").length`))
	b.eval(`document.getElementById("pause").click(); true`)
	b.until(`document.querySelectorAll("#events li").length === 3`)

	last := `[...document.querySelectorAll("#events li")].at(-1)`
	assert.Equal(t, "none", b.eval(fmt.Sprintf(`getComputedStyle(%s.querySelector("pre")).display`, last)))
	b.eval(last + `.click(); true`)
	assert.Equal(t, "block", b.eval(fmt.Sprintf(`getComputedStyle(%s.querySelector("pre")).display`, last)))
	text, _ := b.eval(last + `.querySelector("pre").textContent`).(string)
	assert.True(t, strings.Contains(text, `"new": "zed"`), text)
}
