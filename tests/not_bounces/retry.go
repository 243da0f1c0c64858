// Package retry decides when a deferred message is tried again.
package retry

import (
	"strings"
	"time"
)

// Reply is what the remote server said, e.g. "451 4.7.1 Greylisted, try again later".
type Reply struct {
	Code   int
	Status string
	Text   string
}

// Next returns the delay before the next attempt, or false when the
// message must be returned to its sender (5xx, or queue lifetime over).
func Next(r Reply, age time.Duration) (time.Duration, bool) {
	if r.Code >= 500 || age > 5*24*time.Hour {
		return 0, false
	}
	if strings.Contains(strings.ToLower(r.Text), "greylist") {
		return 5 * time.Minute, true
	}
	switch {
	case age < time.Hour:
		return 10 * time.Minute, true
	case age < 24*time.Hour:
		return time.Hour, true
	}
	return 4 * time.Hour, true
}
