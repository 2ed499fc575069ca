package wire

import "testing"

// TestControlEvents: the opening and the periodic heartbeat each dispatch
// exactly one "heartbeat" event that a page can listen for, neither sets a
// last event ID (so neither disturbs resuming), and the opening carries the
// retry field in front of its event, where hx-sse applies it.
func TestControlEvents(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		b     []byte
		retry int
	}{
		{"opening", Opening(1500), 1500},
		{"heartbeat", Heartbeat, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := decode(string(tt.b))
			if len(got.events) != 1 || got.events[0] != (event{typ: "heartbeat"}) {
				t.Errorf("got events %+v, want one heartbeat without data or id", got.events)
			}
			if got.retry != tt.retry {
				t.Errorf("retry: got %d, want %d", got.retry, tt.retry)
			}
		})
	}
}
