package web

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// TestErrorRetryAfter: a 503 or 429 carries Retry-After, the caller's when
// it set one (stillAllowed sets its own), else 1-5 s; other errors carry none.
func TestErrorRetryAfter(t *testing.T) {
	s := &Server{}
	answer := func(status int, preset string) string {
		w := httptest.NewRecorder()
		if preset != "" {
			w.Header().Set("Retry-After", preset)
		}
		s.error(w, httptest.NewRequest("GET", "/d/x/poll", nil), status, "Busy", "try again")
		if w.Code != status {
			t.Fatalf("status %d, want %d", w.Code, status)
		}
		return w.Header().Get("Retry-After")
	}
	if got := answer(http.StatusServiceUnavailable, "30"); got != "30" {
		t.Errorf("503 with Retry-After 30 set: got %q, want it kept", got)
	}
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		for range 50 {
			got := answer(status, "")
			if n, err := strconv.Atoi(got); err != nil || n < 1 || n > 5 {
				t.Fatalf("%d: Retry-After %q, want 1-5", status, got)
			}
		}
	}
	if got := answer(http.StatusNotFound, ""); got != "" {
		t.Errorf("404: Retry-After %q, want none", got)
	}
}
