package faultproxy_test

import (
	"bufio"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgrelay/pgrelay/internal/faultproxy"
)

// echoServer answers each line with itself and reports on closed when a
// client's connection ends on its side.
func echoServer(t *testing.T) (addr string, closed <-chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	ch := make(chan struct{}, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { ch <- struct{}{} }()
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := c.Write(append(sc.Bytes(), '\n')); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), ch
}

func roundTrip(c net.Conn, timeout time.Duration) (string, error) {
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	return bufio.NewReader(c).ReadString('\n')
}

// TestBlackHoleKeepsOldConnectionsSilentAndOpen: after BlackHole, an old
// connection gets no answer, and closing it is not passed on, while a new
// connection works.
func TestBlackHoleKeepsOldConnectionsSilentAndOpen(t *testing.T) {
	addr, closed := echoServer(t)
	p, err := faultproxy.New(addr)
	require.NoError(t, err)
	defer p.Close()

	old, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	got, err := roundTrip(old, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "ping\n", got)

	p.BlackHole()
	_, err = roundTrip(old, 300*time.Millisecond)
	require.Error(t, err, "a black-holed connection answers nothing")
	require.NoError(t, old.Close())

	fresh, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer fresh.Close()
	got, err = roundTrip(fresh, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "ping\n", got)
	select {
	case <-closed:
		t.Fatal("the server saw the black-holed client's close")
	default:
	}

	require.NoError(t, p.Close())
	<-closed // Close ends both server-side connections
	<-closed
}

// TestFreezeThaw: a frozen proxy holds data until thawed, then passes it.
func TestFreezeThaw(t *testing.T) {
	addr, _ := echoServer(t)
	p, err := faultproxy.New(addr)
	require.NoError(t, err)
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()

	p.Freeze()
	_, err = roundTrip(c, 300*time.Millisecond)
	require.Error(t, err, "frozen")
	p.Thaw()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ping\n", got, "what was held is passed on after the thaw")
}

// TestObserverSeesWhatClientsSend: each connection's observer gets the
// client's bytes, in order, and only the client's.
func TestObserverSeesWhatClientsSend(t *testing.T) {
	addr, _ := echoServer(t)
	var (
		mu   sync.Mutex
		seen []string
	)
	p, err := faultproxy.NewObserved(addr, func() func([]byte) {
		mu.Lock()
		defer mu.Unlock()
		i := len(seen)
		seen = append(seen, "")
		return func(b []byte) {
			mu.Lock()
			defer mu.Unlock()
			seen[i] += string(b)
		}
	})
	require.NoError(t, err)
	defer p.Close()
	for range 2 {
		c, err := net.Dial("tcp", p.Addr())
		require.NoError(t, err)
		for range 2 {
			got, err := roundTrip(c, 5*time.Second)
			require.NoError(t, err)
			require.Equal(t, "ping\n", got)
		}
		require.NoError(t, c.Close())
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"ping\nping\n", "ping\nping\n"}, seen)
}
