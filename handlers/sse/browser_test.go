package sse_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/handlers/sse"
	"github.com/pgrelay/pgrelay/internal/testenv"
	"github.com/pgrelay/pgrelay/relay"
)

// cdp is a minimal Chrome DevTools Protocol client over
// --remote-debugging-pipe (NUL-separated JSON on file descriptors 3 and 4).
type cdp struct {
	t       *testing.T
	mu      sync.Mutex
	w       *os.File
	next    int
	waiting map[int]chan json.RawMessage
	session string
}

type cdpReply struct {
	ID     int             `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func startChromium(t *testing.T) *cdp {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (apt-get install chromium): skipping the browser test")
	}
	toChrome, ourEnd, err := os.Pipe()
	require.NoError(t, err)
	fromChrome, chromeEnd, err := os.Pipe()
	require.NoError(t, err)
	// Not t.TempDir: Chromium's helpers may still write there as it is
	// removed.
	profile, err := os.MkdirTemp("", "pgrelay-chromium-")
	require.NoError(t, err)
	cmd := exec.Command(bin, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--remote-debugging-pipe", "--user-data-dir="+profile, "about:blank")
	cmd.ExtraFiles = []*os.File{toChrome, chromeEnd}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	_ = toChrome.Close()
	_ = chromeEnd.Close()
	c := &cdp{t: t, w: ourEnd, waiting: map[int]chan json.RawMessage{}}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // Chromium and its helpers
		_ = cmd.Wait()
		_ = os.RemoveAll(profile)
		_ = ourEnd.Close()
		_ = fromChrome.Close()
	})
	go func() {
		r := bufio.NewReader(fromChrome)
		for {
			b, err := r.ReadBytes(0)
			if err != nil {
				return
			}
			var rep cdpReply
			if json.Unmarshal(b[:len(b)-1], &rep) != nil || rep.ID == 0 {
				continue // an event
			}
			if rep.Error != nil {
				rep.Result, _ = json.Marshal(map[string]string{"cdp_error": rep.Error.Message})
			}
			c.mu.Lock()
			ch := c.waiting[rep.ID]
			delete(c.waiting, rep.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- rep.Result
			}
		}
	}()
	return c
}

// call sends one command and returns its result.
func (c *cdp) call(method string, params any, result any) {
	c.t.Helper()
	c.mu.Lock()
	c.next++
	id := c.next
	ch := make(chan json.RawMessage, 1)
	c.waiting[id] = ch
	msg := map[string]any{"id": id, "method": method, "params": params}
	if c.session != "" {
		msg["sessionId"] = c.session
	}
	b, err := json.Marshal(msg)
	require.NoError(c.t, err)
	_, err = c.w.Write(append(b, 0))
	c.mu.Unlock()
	require.NoError(c.t, err)
	select {
	case raw := <-ch:
		require.NotContains(c.t, string(raw), "cdp_error", method)
		if result != nil {
			require.NoError(c.t, json.Unmarshal(raw, result))
		}
	case <-time.After(wait):
		require.FailNow(c.t, "no answer from chromium", method)
	}
}

// eval returns the value of a JavaScript expression in the page.
func (c *cdp) eval(js string) any {
	c.t.Helper()
	var res struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		ExceptionDetails any `json:"exceptionDetails"`
	}
	c.call("Runtime.evaluate", map[string]any{"expression": js, "returnByValue": true}, &res)
	require.Nil(c.t, res.ExceptionDetails, js)
	return res.Result.Value
}

// until waits for a JavaScript condition to hold.
func (c *cdp) until(js string) {
	c.t.Helper()
	// The page may not be there yet: an exception counts as false.
	try := "(() => { try { return " + js + " } catch (e) { return false } })()"
	require.Eventually(c.t, func() bool { return c.eval(try) == true }, wait, 20*time.Millisecond, js)
}

// TestPageInChromium opens the page in a headless Chromium: it connects
// with the page's token, filters by table and action, shows events live,
// pauses, and expands an event to show its changes.
func TestPageInChromium(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	c := startChromium(t)
	h, srv := newHandler(t, newPool(t), sse.Config{Token: "tok"})

	var target struct{ TargetID string }
	c.call("Target.createTarget", map[string]any{"url": srv.URL + "/?token=tok"}, &target)
	var att struct{ SessionID string }
	c.call("Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	c.session = att.SessionID

	c.until(`document.getElementById("status").dataset.opens === "1"`)
	c.eval(`document.getElementById("tables").value = "public.users";
		document.querySelector("input[value=update]").click();
		document.getElementById("watch").click(); true`)
	c.until(`document.getElementById("status").dataset.opens === "2"`)
	require.Eventually(t, func() bool { return h.Clients() == 1 }, wait, 10*time.Millisecond)

	upd := events(1, 1, "public.users", relay.ActionUpdate)[0]
	upd.Changes = json.RawMessage(`[{"field":"name","old":"a","new":"zed"}]`)
	batch := []relay.Event{upd}
	batch = append(batch, events(2, 1, "public.items", relay.ActionUpdate)...)
	batch = append(batch, events(3, 1, "public.users", relay.ActionInsert)...)
	batch = append(batch, events(4, 1, "public.users", relay.ActionUpdate)...)
	require.NoError(t, h.OnEvents(ctx, batch))
	c.until(`document.querySelectorAll("#events li").length === 2`)
	// Newest first: position 4, then 1; items and the insert filtered out.
	assert.Equal(t, "update#4 public.users id 4", c.eval(`document.querySelector("#events li div").textContent`))

	c.eval(`document.getElementById("pause").click(); true`)
	require.NoError(t, h.OnEvents(ctx, events(5, 1, "public.users", relay.ActionUpdate)))
	c.until(`document.getElementById("status").textContent.includes("paused (1 held)")`)
	assert.Equal(t, 2.0, c.eval(`document.querySelectorAll("#events li").length`))
	c.eval(`document.getElementById("pause").click(); true`)
	c.until(`document.querySelectorAll("#events li").length === 3`)

	last := `[...document.querySelectorAll("#events li")].at(-1)`
	assert.Equal(t, "none", c.eval(fmt.Sprintf(`getComputedStyle(%s.querySelector("pre")).display`, last)))
	c.eval(last + `.click(); true`)
	assert.Equal(t, "block", c.eval(fmt.Sprintf(`getComputedStyle(%s.querySelector("pre")).display`, last)))
	text, _ := c.eval(last + `.querySelector("pre").textContent`).(string)
	assert.True(t, strings.Contains(text, `"new": "zed"`), text)
}
