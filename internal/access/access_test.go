package access

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestNewSecretIsValid(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s := NewSecret()
		if !ValidSecret(s) {
			t.Fatalf("NewSecret gave %q, which ValidSecret refuses", s)
		}
		if seen[s] {
			t.Fatalf("NewSecret repeated %q", s)
		}
		seen[s] = true
	}
}

func TestValidSecret(t *testing.T) {
	good := NewSecret()
	for _, tt := range []struct {
		s    string
		want bool
	}{
		{good, true},
		{"", false},
		{TokenPrefix, false},
		{strings.TrimPrefix(good, TokenPrefix), false},
		{"xxx_" + good[4:], false},
		{good[:len(good)-1], false},
		{good + "A", false},
		{good[:len(good)-1] + "=", false},
		{good[:len(good)-1] + "+", false},
		{good[:len(good)-1] + "/", false},
		{good[:len(good)-1] + "\x00", false},
		{good[:len(good)-1] + "\xff", false},
		{good[:10] + "é" + good[12:], false},
		{good[:10] + "\r" + good[11:], false},
		{good[:10] + "\n" + good[11:], false},
		{strings.ToUpper(good), false},
		{TokenPrefix + strings.Repeat("A", 43), true},
	} {
		if got := ValidSecret(tt.s); got != tt.want {
			t.Errorf("ValidSecret(%q): got %v, want %v", tt.s, got, tt.want)
		}
	}
}

func FuzzValidSecret(f *testing.F) {
	f.Add(NewSecret())
	f.Add("")
	f.Add(TokenPrefix)
	f.Add(TokenPrefix + strings.Repeat("-", 43))
	f.Add(TokenPrefix + strings.Repeat("_", 42) + "\xff")
	f.Add("dbt_00\r0000000000000000000000000000000000000000")
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidSecret(s) {
			return
		}
		if !strings.HasPrefix(s, TokenPrefix) || len(s) != len(TokenPrefix)+43 {
			t.Fatalf("ValidSecret accepted %q of the wrong shape", s)
		}
		for _, c := range s[len(TokenPrefix):] {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				t.Fatalf("ValidSecret accepted %q with %q, which is not base64url", s, c)
			}
		}
	})
}

// testSet holds a token for dashboard 1, one for every dashboard, and an
// expired one for dashboard 1.
func testSet(now time.Time) (s *Set, forOne, forAll, expired string) {
	forOne, forAll, expired = NewSecret(), NewSecret(), NewSecret()
	s = &Set{grants: []Grant{
		{ID: 1, Hash: Hash(forOne), DashboardID: 1, ExpiresAt: now.Add(time.Hour)},
		{ID: 2, Hash: Hash(forAll), DashboardID: 0, ExpiresAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ID: 3, Hash: Hash(expired), DashboardID: 1, ExpiresAt: now.Add(-time.Second)},
	}}
	return s, forOne, forAll, expired
}

func TestSetCheck(t *testing.T) {
	now := time.Now()
	s, forOne, forAll, expired := testSet(now)
	for _, tt := range []struct {
		name   string
		secret string
		dash   int64
		wantID int64 // 0: refused
	}{
		{"scoped token, its dashboard", forOne, 1, 1},
		{"scoped token, another dashboard", forOne, 2, 0},
		{"site-wide token", forAll, 1, 2},
		{"site-wide token elsewhere", forAll, 77, 2},
		{"expired", expired, 1, 0},
		{"unknown", NewSecret(), 1, 0},
		{"empty", "", 1, 0},
		{"garbage", "nonsense", 1, 0},
		{"hash given as secret", string(Hash(forOne)), 1, 0},
		{"secret with a suffix", forOne + "x", 1, 0},
	} {
		g, ok := s.Check(tt.secret, tt.dash, now)
		if ok != (tt.wantID != 0) || g.ID != tt.wantID {
			t.Errorf("%s: got grant %d %v, want %d", tt.name, g.ID, ok, tt.wantID)
		}
	}
	// A token stops working the moment it expires, even before a reload.
	if _, ok := s.Check(forOne, 1, now.Add(2*time.Hour)); ok {
		t.Error("got an expired grant accepted, want refused")
	}
	var nilSet *Set
	if _, ok := nilSet.Check(forOne, 1, now); ok {
		t.Error("nil set accepted a token")
	}
	if nilSet.Has(1) {
		t.Error("nil set has a grant")
	}
	if !s.Has(1) || !s.Has(3) || s.Has(4) {
		t.Error("Has: got the wrong answer for ids 1, 3, 4")
	}
}

func FuzzSetCheck(f *testing.F) {
	now := time.Now()
	s, forOne, forAll, expired := testSet(now)
	f.Add(forOne, int64(1))
	f.Add(forAll, int64(0))
	f.Add(expired, int64(1))
	f.Add("", int64(-1))
	f.Add(TokenPrefix+strings.Repeat("A", 43), int64(1))
	f.Fuzz(func(t *testing.T, secret string, dash int64) {
		g, ok := s.Check(secret, dash, now)
		if !ok {
			if g.ID != 0 {
				t.Fatalf("refused but returned grant %d", g.ID)
			}
			return
		}
		switch {
		case secret == forOne && dash == 1 && g.ID == 1:
		case secret == forAll && g.ID == 2:
		default:
			t.Fatalf("Check(%q, %d) accepted grant %d", secret, dash, g.ID)
		}
	})
}

func TestProxyUser(t *testing.T) {
	p := &Proxy{Header: "X-Forwarded-User", Ranges: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	for _, tt := range []struct {
		remote, header, want string
	}{
		{"10.1.2.3:5000", "alice", "alice"},
		{"10.1.2.3:5000", "  alice ", "alice"},
		{"10.1.2.3:5000", "", ""},
		{"[::ffff:10.1.2.3]:5000", "alice", "alice"}, // IPv4-mapped
		{"[fd00::1]:5000", "bob", "bob"},
		{"127.0.0.1:5000", "alice", ""},
		{"11.0.0.1:5000", "alice", ""},
		{"[::1]:5000", "alice", ""},
		{"10.1.2.3", "alice", ""}, // no port: not a real connection
		{"garbage", "alice", ""},
		{"", "alice", ""},
	} {
		r := httptest.NewRequest("GET", "/d/x", nil)
		r.RemoteAddr = tt.remote
		if tt.header != "" {
			r.Header.Set("X-Forwarded-User", tt.header)
		}
		if got := p.User(r); got != tt.want {
			t.Errorf("User from %q with %q: got %q, want %q", tt.remote, tt.header, got, tt.want)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.1.2.3:5000"
	r.Header.Set("X-Forwarded-User", "alice")
	var none *Proxy
	if got := none.User(r); got != "" {
		t.Errorf("nil proxy: got %q, want no user", got)
	}
	if got := (&Proxy{Ranges: p.Ranges}).User(r); got != "" {
		t.Errorf("proxy without header: got %q, want no user", got)
	}
}
