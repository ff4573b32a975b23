package sluice

import (
	"context"
	"net"
)

// WithLookup replaces the resolver of host names (tests only).
func WithLookup(f func(ctx context.Context, host string) ([]net.IPAddr, error)) Option {
	return func(c *config) { c.lookup = f }
}

// BackoffWait exposes backoffWait to the tests.
var BackoffWait = backoffWait
