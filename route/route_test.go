package route_test

import (
	"fmt"
	"testing"

	"github.com/pgrelay/pgrelay/route"
)

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		pattern  bool
	}{
		{"users", "public.users.cdc_events", false},
		{"public.users", "public.users.cdc_events", false},
		{" shop.orders ", "shop.orders.cdc_events", false},
		{"shop.orders.cdc_events", "shop.orders.cdc_events", false},
		{"shop.*", "shop.*.cdc_events", true},
		{"*.cdc_events", "*.cdc_events", true},
	} {
		got, pattern := route.Resolve(tc.in)
		if got != tc.want || pattern != tc.pattern {
			t.Errorf("Resolve(%q) = %q, %v; want %q, %v", tc.in, got, pattern, tc.want, tc.pattern)
		}
	}
}

func ExampleChannel() {
	fmt.Println(route.Channel("public", "users"))
	// Output: public.users.cdc_events
}
