package listen

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const min, max = 100 * time.Millisecond, 10 * time.Second
	tests := []struct {
		attempt int
		want    time.Duration // the un-jittered delay; the result is in [want/2, want]
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{7, 6400 * time.Millisecond},
		{8, max},
		{1000, max},
	}
	for _, tt := range tests {
		for range 200 {
			got := backoff(tt.attempt, min, max)
			if got < tt.want/2 || got > tt.want {
				t.Fatalf("backoff(%d): got %v, want in [%v, %v]", tt.attempt, got, tt.want/2, tt.want)
			}
		}
	}
}
