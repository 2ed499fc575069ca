package config

import (
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// clearEnv unsets every variable Config reads, restoring them when the test
// ends, so the host's environment cannot leak into a test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, name := range []string{"DATABASE_URL", "DASHBOARD_ADDR", "DASHBOARD_DATA_DIR", "DASHBOARD_LOG_LEVEL",
		"DASHBOARD_LOG_FORMAT", "DASHBOARD_BATCH_WINDOW", "DASHBOARD_MAX_REFRESH_HZ", "DASHBOARD_TRUSTED_PROXY_CIDRS",
		"DASHBOARD_USER_HEADER", "DASHBOARD_LONGPOLL_WAIT", "DASHBOARD_MIGRATE", "DASHBOARD_MAX_ROWS",
		"DASHBOARD_METRICS_ADDR", "DASHBOARD_FEED", "DASHBOARD_PUBLIC_URL", "DASHBOARD_PROVISION_DIR",
		"DASHBOARD_PROVISION_PRUNE"} {
		t.Setenv(name, "") // registers the restore
		os.Unsetenv(name)
	}
}

func TestLoadDefaults(t *testing.T) {
	clearEnv(t)
	c, err := Load()
	if err != nil {
		t.Fatalf("Load with defaults: %v", err)
	}
	if c.Addr != "127.0.0.1:8080" || c.BatchWindow != 25*time.Millisecond || c.MaxRefreshHz != 10 ||
		c.QueryTimeout != 5*time.Second || c.SafetyRefresh != 5*time.Minute || !c.Migrate ||
		c.Feed != FeedNotify || c.Logical() {
		t.Errorf("got %+v, want the documented defaults", c)
	}
}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"DASHBOARD_ADDR", "nonsense", "DASHBOARD_ADDR"},
		{"DASHBOARD_ADDR", "127.0.0.1:99999", "DASHBOARD_ADDR"},
		{"DASHBOARD_ADDR", "bad host!:80", "DASHBOARD_ADDR"},
		{"DASHBOARD_LOG_LEVEL", "loud", "DASHBOARD_LOG_LEVEL"},
		{"DASHBOARD_LOG_FORMAT", "xml", "DASHBOARD_LOG_FORMAT"},
		{"DASHBOARD_BATCH_WINDOW", "soon", "DASHBOARD_BATCH_WINDOW: cannot use \"soon\": want a duration"},
		{"DASHBOARD_BATCH_WINDOW", "-1s", "DASHBOARD_BATCH_WINDOW"},
		{"DASHBOARD_MAX_REFRESH_HZ", "0", "DASHBOARD_MAX_REFRESH_HZ"},
		{"DASHBOARD_MAX_ROWS", "many", "DASHBOARD_MAX_ROWS: cannot use \"many\": want a whole number"},
		{"DASHBOARD_MIGRATE", "perhaps", "DASHBOARD_MIGRATE"},
		{"DASHBOARD_LONGPOLL_WAIT", "2m", "DASHBOARD_LONGPOLL_WAIT"},
		{"DASHBOARD_TRUSTED_PROXY_CIDRS", "10.0.0.0/8,nope", "DASHBOARD_TRUSTED_PROXY_CIDRS"},
		{"DASHBOARD_METRICS_ADDR", "nonsense", "DASHBOARD_METRICS_ADDR"},
		{"DASHBOARD_METRICS_ADDR", "127.0.0.1:99999", "DASHBOARD_METRICS_ADDR"},
		{"DATABASE_URL", "nonsense", "DATABASE_URL"},
		{"DASHBOARD_FEED", "wal", "DASHBOARD_FEED: \"wal\" is not one of notify, logical"},
		{"DASHBOARD_FEED", "Logical", "DASHBOARD_FEED"},
		{"DASHBOARD_PUBLIC_URL", "dash.example.com", "DASHBOARD_PUBLIC_URL"},
		{"DASHBOARD_PUBLIC_URL", "ftp://dash.example.com", "DASHBOARD_PUBLIC_URL"},
		{"DASHBOARD_PUBLIC_URL", "https://u:p@dash.example.com", "DASHBOARD_PUBLIC_URL"},
		{"DASHBOARD_PUBLIC_URL", "https://dash.example.com/?x=1", "DASHBOARD_PUBLIC_URL"},
		{"DASHBOARD_PROVISION_DIR", "  ", "DASHBOARD_PROVISION_DIR"},
		{"DASHBOARD_PROVISION_PRUNE", "true", "DASHBOARD_PROVISION_PRUNE: needs DASHBOARD_PROVISION_DIR"},
		{"DASHBOARD_PROVISION_PRUNE", "sometimes", "DASHBOARD_PROVISION_PRUNE"},
		{"DASHBOARD_READ_DATABASE_URL", "postgres://standby/db", "DASHBOARD_READ_DATABASE_URL: needs DATABASE_URL"},
		{"DASHBOARD_READ_DATABASE_URL", "host=standby dbname=db", "DASHBOARD_READ_DATABASE_URL"},
		{"DASHBOARD_STANDBY_MAX_WAIT", "-1s", "DASHBOARD_STANDBY_MAX_WAIT"},
		{"DASHBOARD_STANDBY_MAX_WAIT", "2h", "DASHBOARD_STANDBY_MAX_WAIT"},
		{"DASHBOARD_TLS_CERT_FILE", "/etc/cert.pem", "DASHBOARD_TLS_CERT_FILE: and DASHBOARD_TLS_KEY_FILE go together"},
		{"DASHBOARD_TLS_KEY_FILE", "/etc/key.pem", "DASHBOARD_TLS_KEY_FILE go together"},
		{"DASHBOARD_H2C", "maybe", "DASHBOARD_H2C"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(tt.name, tt.value)
			_, err := Load()
			if err == nil {
				t.Fatalf("Load with %s=%q: got no error, want one naming %s", tt.name, tt.value, tt.name)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestValidAddrs(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8080", ":8080", "localhost:0", "[::1]:80", "0.0.0.0:443"} {
		if !validAddr(addr) {
			t.Errorf("validAddr(%q) = false, want true", addr)
		}
	}
}

func TestUserHeaderNeedsTrustedProxies(t *testing.T) {
	clearEnv(t)
	t.Setenv("DASHBOARD_USER_HEADER", "X-Forwarded-User")
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "DASHBOARD_USER_HEADER") {
		t.Fatalf("got %v, want an error naming DASHBOARD_USER_HEADER", err)
	}
	t.Setenv("DASHBOARD_TRUSTED_PROXY_CIDRS", "10.0.0.0/8, 127.0.0.1/32")
	if _, err := Load(); err != nil {
		t.Fatalf("got %v, want no error", err)
	}
}

// TestTrustedProxyCIDRsAlone: a TLS-terminating proxy that sets only
// X-Forwarded-For and X-Forwarded-Proto is trusted without any identity
// header.
func TestTrustedProxyCIDRsAlone(t *testing.T) {
	clearEnv(t)
	t.Setenv("DASHBOARD_TRUSTED_PROXY_CIDRS", "10.0.0.0/8,fd00::/8")
	c, err := Load()
	if err != nil {
		t.Fatalf("got %v, want no error", err)
	}
	if len(c.TrustedProxyCIDRs) != 2 || c.UserHeader != "" {
		t.Errorf("got ranges %q and user header %q, want two ranges and no header", c.TrustedProxyCIDRs, c.UserHeader)
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://app:s3cret@db:5432/app", "postgres://app:<redacted>@db:5432/app"},
		{"postgres://app@db/app", "postgres://app@db/app"},
		{"host=db user=app password=s3cret dbname=app", "host=db user=app password=<redacted> dbname=app"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(RedactURL(tt.in), "s3cret") {
			t.Errorf("RedactURL(%q) leaks the password", tt.in)
		}
	}
}

func TestPrintHelpListsEveryVariable(t *testing.T) {
	var b strings.Builder
	if err := PrintHelp(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DATABASE_URL", "DASHBOARD_ADDR", "127.0.0.1:8080", "DASHBOARD_BATCH_WINDOW", "25ms", "DASHBOARD_SAFETY_REFRESH",
		"DASHBOARD_METRICS_ADDR", "DASHBOARD_FEED", "DASHBOARD_PUBLIC_URL", "DASHBOARD_PROVISION_DIR", "DASHBOARD_PROVISION_PRUNE"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("help output lacks %q:\n%s", want, b.String())
		}
	}
}

// TestReadmeListsEveryVariable: the README's configuration table names
// every variable `dashboard help` prints, so that the two cannot drift.
func TestReadmeListsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		name := typ.Field(i).Tag.Get("envconfig")
		if name == "" {
			continue
		}
		if !strings.Contains(string(readme), "| `"+name+"` |") {
			t.Errorf("README's configuration table lacks %s", name)
		}
	}
}

func TestLoadProvision(t *testing.T) {
	clearEnv(t)
	c, err := Load()
	if err != nil || c.ProvisionDir != "" || c.ProvisionPrune {
		t.Fatalf("defaults: got %q, %v (%v), want no folder and no pruning", c.ProvisionDir, c.ProvisionPrune, err)
	}
	t.Setenv("DASHBOARD_PROVISION_DIR", "/etc/dashboards")
	t.Setenv("DASHBOARD_PROVISION_PRUNE", "true")
	c, err = Load()
	if err != nil || c.ProvisionDir != "/etc/dashboards" || !c.ProvisionPrune {
		t.Errorf("got %q, %v (%v), want /etc/dashboards, true", c.ProvisionDir, c.ProvisionPrune, err)
	}
}

func TestLoadFeedLogical(t *testing.T) {
	clearEnv(t)
	t.Setenv("DASHBOARD_FEED", "logical")
	c, err := Load()
	if err != nil {
		t.Fatalf("Load with DASHBOARD_FEED=logical: %v", err)
	}
	if !c.Logical() {
		t.Errorf("Logical(): got false, want true (Feed %q)", c.Feed)
	}
}

func TestPublicBase(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct {
		public, addr, want string
	}{
		{"https://dash.example.com/", "127.0.0.1:8080", "https://dash.example.com"},
		{"http://tv.local:8080/wall", "0.0.0.0:8080", "http://tv.local:8080/wall"},
		{"", "127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"", "[::1]:8080", "http://[::1]:8080"},
		{"", "0.0.0.0:9000", "http://" + net.JoinHostPort(host, "9000")},
		{"", ":9000", "http://" + net.JoinHostPort(host, "9000")},
		{"", "[::]:9000", "http://" + net.JoinHostPort(host, "9000")},
	} {
		c := Config{PublicURL: tc.public, Addr: tc.addr}
		if got := c.PublicBase(); got != tc.want {
			t.Errorf("PublicBase(%q, %q) = %q, want %q", tc.public, tc.addr, got, tc.want)
		}
	}
}
