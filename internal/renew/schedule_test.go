package renew

import (
	"testing"
	"time"
)

func TestDeadline(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		name      string
		policy    Policy
		notBefore time.Time
		notAfter  time.Time
		jitter    float64
		want      time.Time
	}{
		{"jitter 0 is 70% of the lifetime", Policy{}, t0, t0.Add(100 * time.Hour), 0, t0.Add(70 * time.Hour)},
		{"jitter 0.5 is 80%", Policy{}, t0, t0.Add(100 * time.Hour), 0.5, t0.Add(80 * time.Hour)},
		{"jitter towards 1 is 90%", Policy{}, t0, t0.Add(100 * time.Hour), 1, t0.Add(90 * time.Hour)},
		{"jitter out of range is clamped", Policy{}, t0, t0.Add(100 * time.Hour), 7, t0.Add(90 * time.Hour)},
		{"negative jitter is clamped", Policy{}, t0, t0.Add(100 * time.Hour), -1, t0.Add(70 * time.Hour)},
		{"backdating counts as lifetime used", Policy{}, t0.Add(-5 * time.Minute), t0.Add(10 * time.Minute), 0, t0.Add(5*time.Minute + 30*time.Second)},
		{"RENEW_BEFORE renews that long before expiry", Policy{Before: 8 * time.Hour}, t0, t0.Add(day), 0.9, t0.Add(16 * time.Hour)},
		{"RENEW_BEFORE has no jitter", Policy{Before: 8 * time.Hour}, t0, t0.Add(day), 0, t0.Add(16 * time.Hour)},
		{"RENEW_BEFORE longer than the lifetime falls back to the window", Policy{Before: 2 * day}, t0, t0.Add(day), 0, t0.Add(day * 7 / 10)},
		{"RENEW_BEFORE equal to the lifetime falls back to the window", Policy{Before: day}, t0, t0.Add(day), 1, t0.Add(day * 9 / 10)},
		{"no lifetime is due at once", Policy{}, t0, t0, 0.5, t0},
		{"inverted validity is due at once", Policy{Before: time.Hour}, t0, t0.Add(-time.Hour), 0.5, t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.policy.Deadline(tt.notBefore, tt.notAfter, tt.jitter); !got.Equal(tt.want) {
				t.Errorf("Deadline = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEarliestIsTheStartOfTheWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got, want := (Policy{}).Earliest(t0, t0.Add(10*time.Hour)), t0.Add(7*time.Hour); !got.Equal(want) {
		t.Errorf("Earliest = %v, want %v", got, want)
	}
	if got, want := (Policy{Before: time.Hour}).Earliest(t0, t0.Add(10*time.Hour)), t0.Add(9*time.Hour); !got.Equal(want) {
		t.Errorf("Earliest with RENEW_BEFORE = %v, want %v", got, want)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: 2 * time.Second, Max: time.Minute}
	tests := []struct {
		attempt int
		jitter  float64
		want    time.Duration
	}{
		{1, 0, 2 * time.Second},
		{1, 0.5, 1500 * time.Millisecond},
		{1, 1, time.Second},
		{2, 0, 4 * time.Second},
		{3, 0, 8 * time.Second},
		{5, 0, 32 * time.Second},
		{6, 0, time.Minute},
		{6, 1, 30 * time.Second},
		{1000, 0, time.Minute},
		{0, 0, 2 * time.Second},
		{3, 9, 4 * time.Second},
	}
	for _, tt := range tests {
		if got := b.Delay(tt.attempt, tt.jitter); got != tt.want {
			t.Errorf("Delay(%d, %v) = %v, want %v", tt.attempt, tt.jitter, got, tt.want)
		}
	}
}

func TestDeniedDelay(t *testing.T) {
	tests := []struct {
		name                 string
		left, backoff, limit time.Duration
		want                 time.Duration
	}{
		{"a quarter of the time left", 20 * time.Minute, 2 * time.Second, time.Hour, 5 * time.Minute},
		{"at most the limit", 20 * time.Hour, 2 * time.Second, 10 * time.Minute, 10 * time.Minute},
		{"never less than the backoff", 4 * time.Second, 30 * time.Second, 10 * time.Minute, 30 * time.Second},
		{"expired: the backoff", -time.Hour, 8 * time.Second, 10 * time.Minute, 8 * time.Second},
	}
	for _, tt := range tests {
		if got := deniedDelay(tt.left, tt.backoff, tt.limit); got != tt.want {
			t.Errorf("%s: deniedDelay = %v, want %v", tt.name, got, tt.want)
		}
	}
}
