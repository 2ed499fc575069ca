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

// TestOpeningFor: the opening heartbeat carries the server's release as its
// data, and stays the one heartbeat without id with the retry in front; a
// release that could break the field is left out rather than sent.
func TestOpeningFor(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		release, want string
	}{
		{"0123456789abcdef", "0123456789abcdef"},
		{"", ""},
		{"a\nevent: gone", ""},
		{"a\rb", ""},
	} {
		got := decode(string(OpeningFor(2000, tt.release)))
		if len(got.events) != 1 || got.events[0] != (event{typ: "heartbeat", data: tt.want}) {
			t.Errorf("release %q: got events %+v, want one heartbeat with data %q", tt.release, got.events, tt.want)
		}
		if got.retry != 2000 {
			t.Errorf("release %q: retry: got %d, want 2000", tt.release, got.retry)
		}
	}
}

// TestGoodbyeSpread: each goodbye carries its own retry, drawn from
// [GoodbyeMinRetry, GoodbyeMaxRetry], and many goodbyes cover that range
// rather than bunching: every tenth of it is hit by some of 2,000 draws
// (a uniform draw misses a given tenth with probability 0.9^2000).
func TestGoodbyeSpread(t *testing.T) {
	t.Parallel()
	var hit [10]int
	for range 2000 {
		got := decode(string(Goodbye()))
		if len(got.events) != 1 || got.events[0].typ != "reconnect" {
			t.Fatalf("got events %+v, want one reconnect event", got.events)
		}
		if got.retry < GoodbyeMinRetry || got.retry > GoodbyeMaxRetry {
			t.Fatalf("retry %d outside [%d, %d]", got.retry, GoodbyeMinRetry, GoodbyeMaxRetry)
		}
		hit[min(9, (got.retry-GoodbyeMinRetry)*10/(GoodbyeMaxRetry-GoodbyeMinRetry))]++
	}
	for i, n := range hit {
		if n == 0 {
			t.Errorf("no retry in tenth %d of the range: %v", i, hit)
		}
	}
}
