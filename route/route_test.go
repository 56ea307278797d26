package route_test

import (
	"fmt"
	"slices"
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

func TestCandidates(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"orders.shipped", []string{"orders.shipped.cdc_events", "orders.shipped"}},
		{"audit", []string{"public.audit.cdc_events"}},
		{"public.users", []string{"public.users.cdc_events"}},
		{"public.users.cdc_events", []string{"public.users.cdc_events"}},
		{"shop.*", []string{"shop.*.cdc_events"}},
	} {
		if got := route.Candidates(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Candidates(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func ExampleChannel() {
	fmt.Println(route.Channel("public", "users"))
	// Output: public.users.cdc_events
}
