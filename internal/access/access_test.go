package access

import (
	"crypto/tls"
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

func TestProxyClientAddr(t *testing.T) {
	p := &Proxy{Ranges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	manyTrusted := strings.Repeat("10.0.0.9, ", 1000)
	for _, tt := range []struct {
		name   string
		remote string
		xff    []string // X-Forwarded-For lines, in order
		want   string
	}{
		{"untrusted peer, no header", "203.0.113.9:1", nil, "203.0.113.9"},
		{"untrusted peer: header ignored", "203.0.113.9:1", []string{"1.2.3.4"}, "203.0.113.9"},
		{"untrusted peer naming a trusted hop", "203.0.113.9:1", []string{"10.0.0.5"}, "203.0.113.9"},
		{"trusted peer, no header", "10.0.0.1:5000", nil, "10.0.0.1"},
		{"trusted peer, empty header", "10.0.0.1:5000", []string{""}, "10.0.0.1"},
		{"one hop", "10.0.0.1:5000", []string{"1.2.3.4"}, "1.2.3.4"},
		{"spoofed hops left of the client", "10.0.0.1:5000", []string{"6.6.6.6, 7.7.7.7, 1.2.3.4"}, "1.2.3.4"},
		{"a second trusted proxy", "10.0.0.1:5000", []string{"6.6.6.6, 1.2.3.4, 10.0.0.2"}, "1.2.3.4"},
		{"several header lines", "10.0.0.1:5000", []string{"6.6.6.6", "1.2.3.4, 10.0.0.2"}, "1.2.3.4"},
		{"no spaces", "10.0.0.1:5000", []string{"6.6.6.6,1.2.3.4"}, "1.2.3.4"},
		{"every hop trusted: the leftmost", "10.0.0.1:5000", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3"},
		{"garbage hop: the trusted hop right of it", "10.0.0.1:5000", []string{"1.2.3.4, garbage, 10.0.0.2"}, "10.0.0.2"},
		{"garbage only: the peer", "10.0.0.1:5000", []string{"garbage"}, "10.0.0.1"},
		{"nginx's unknown: the peer", "10.0.0.1:5000", []string{"unknown"}, "10.0.0.1"},
		{"empty hop: the peer", "10.0.0.1:5000", []string{"1.2.3.4, "}, "10.0.0.1"},
		{"header injection: the peer", "10.0.0.1:5000", []string{"1.2.3.4\r\nX: y"}, "10.0.0.1"},
		{"a huge garbage hop", "10.0.0.1:5000", []string{"1.2.3.4, " + strings.Repeat("a", 30000)}, "10.0.0.1"},
		{"a subnet instead of an address", "10.0.0.1:5000", []string{"1.2.3.0/24"}, "10.0.0.1"},
		{"IPv6", "10.0.0.1:5000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"IPv6 in brackets with a port", "10.0.0.1:5000", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"IPv6 in brackets", "10.0.0.1:5000", []string{"[2001:db8::1]"}, "2001:db8::1"},
		{"IPv6 with a zone", "10.0.0.1:5000", []string{"fe80::1%eth0"}, "fe80::1"},
		{"IPv4-mapped IPv6", "10.0.0.1:5000", []string{"::ffff:1.2.3.4"}, "1.2.3.4"},
		{"IPv4 with a port", "10.0.0.1:5000", []string{"1.2.3.4:5678"}, "1.2.3.4"},
		{"trusted IPv6 hop", "10.0.0.1:5000", []string{"1.2.3.4, fd00::7"}, "1.2.3.4"},
		{"trusted IPv6 peer", "[fd00::1]:443", []string{"1.2.3.4"}, "1.2.3.4"},
		{"trusted IPv4-mapped peer", "[::ffff:10.1.2.3]:443", []string{"1.2.3.4"}, "1.2.3.4"},
		{"untrusted IPv6 peer", "[2001:db8::9]:443", []string{"1.2.3.4"}, "2001:db8::9"},
		{"many hops, the client last", "10.0.0.1:5000", []string{strings.Repeat("6.6.6.6, ", 1000) + "1.2.3.4"}, "1.2.3.4"},
		{"many trusted hops: the leftmost looked at", "10.0.0.1:5000", []string{manyTrusted + "10.0.0.8"}, "10.0.0.9"},
		{"unparsable peer", "@pipe", []string{"1.2.3.4"}, "@pipe"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := p.ClientAddr(r); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	var none *Proxy
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:5000"
	r.Header.Set("X-Forwarded-For", "1.2.3.4")
	if got := none.ClientAddr(r); got != "10.0.0.1" {
		t.Errorf("nil proxy: got %q, want the peer 10.0.0.1", got)
	}
}

func TestProxyScheme(t *testing.T) {
	p := &Proxy{Ranges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, tt := range []struct {
		name   string
		remote string
		tls    bool
		proto  []string
		want   string
	}{
		{"plain, untrusted", "203.0.113.9:1", false, nil, "http"},
		{"TLS, untrusted", "203.0.113.9:1", true, nil, "https"},
		{"untrusted peer: header ignored", "203.0.113.9:1", false, []string{"https"}, "http"},
		{"TLS wins over the header", "10.0.0.1:1", true, []string{"http"}, "https"},
		{"trusted https", "10.0.0.1:1", false, []string{"https"}, "https"},
		{"trusted HTTPS", "10.0.0.1:1", false, []string{" HTTPS "}, "https"},
		{"trusted http", "10.0.0.1:1", false, []string{"http"}, "http"},
		{"the client-facing proxy's, first in a list", "10.0.0.1:1", false, []string{"https, http"}, "https"},
		{"first of several lines", "10.0.0.1:1", false, []string{"https", "http"}, "https"},
		{"garbage", "10.0.0.1:1", false, []string{"javascript"}, "http"},
		{"empty", "10.0.0.1:1", false, []string{""}, "http"},
		{"unparsable peer", "@pipe", false, []string{"https"}, "http"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		if !tt.tls {
			r.TLS = nil
		} else {
			r.TLS = &tls.ConnectionState{}
		}
		for _, v := range tt.proto {
			r.Header.Add("X-Forwarded-Proto", v)
		}
		if got := p.Scheme(r); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	var none *Proxy
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:1"
	r.Header.Set("X-Forwarded-Proto", "https")
	if got := none.Scheme(r); got != "http" {
		t.Errorf("nil proxy: got %q, want http", got)
	}
}

func FuzzProxyClientAddr(f *testing.F) {
	p := &Proxy{Ranges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	f.Add("10.0.0.1:5000", "1.2.3.4, 10.0.0.2")
	f.Add("10.0.0.1:5000", "[2001:db8::1]:443,garbage,,")
	f.Add("203.0.113.9:1", "1.2.3.4")
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		got := p.ClientAddr(r)
		if got == remote {
			return
		}
		a, err := netip.ParseAddr(got)
		if err != nil {
			t.Fatalf("ClientAddr(%q, %q) = %q, neither the peer nor an address", remote, xff, got)
		}
		if a.Zone() != "" || a.Is4In6() {
			t.Fatalf("ClientAddr(%q, %q) = %q, want no zone and no IPv4-mapped form", remote, xff, got)
		}
		peer, err := netip.ParseAddrPort(remote)
		if err != nil || !p.trusts(peer.Addr().Unmap()) {
			if err != nil || a != peer.Addr().Unmap().WithZone("") {
				t.Fatalf("untrusted peer %q: got %q, want the peer", remote, got)
			}
		}
	})
}
