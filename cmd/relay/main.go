// Command relay installs pgrelay's change capture in PostgreSQL and runs the
// relay daemon that publishes the changes to Redis. Run `relay --help`.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

func main() {
	redis.SetLogger(quietRedisLogger{})
	app := newApp(os.Stdout, os.Stderr)
	if err := app.Run(hoistGlobalFlags(app, os.Args)); err != nil {
		fmt.Fprintln(os.Stderr, "relay: "+oneLine(err.Error()))
		code := 1
		var coded interface{ ExitCode() int }
		if errors.As(err, &coded) {
			code = coded.ExitCode()
		}
		os.Exit(code)
	}
}

// oneLine keeps an error to a single line on the terminal.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
