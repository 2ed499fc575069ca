// Package config owns the server's configuration: one struct read from the
// environment with envconfig, validated before anything starts. It does not
// open files or connections.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"

	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Config is every setting of the server. Field tags give the variable name,
// the default that works for the demo, and the text `dashboard help` prints.
type Config struct {
	DatabaseURL string `envconfig:"DATABASE_URL" desc:"PostgreSQL connection string; empty starts a private server in DASHBOARD_DATA_DIR"`
	// ReadDatabaseURL is one or more hot standbys of DATABASE_URL, separated
	// by white space: panel queries run there once they have replayed what
	// the primary had when the change was heard.
	ReadDatabaseURL string        `envconfig:"DASHBOARD_READ_DATABASE_URL" desc:"hot standbys of DATABASE_URL (postgres:// URLs separated by spaces) where panel queries run; the listener, the catalog and the change feed stay on the primary"`
	StandbyMaxWait  time.Duration `envconfig:"DASHBOARD_STANDBY_MAX_WAIT" default:"500ms" desc:"longest a refresh waits for a standby to replay the primary's position before it queries the primary instead"`
	Addr            string        `envconfig:"DASHBOARD_ADDR" default:"127.0.0.1:8080" desc:"HTTP listen address (host:port)"`
	DataDir         string        `envconfig:"DASHBOARD_DATA_DIR" default:"./dashboard-data" desc:"folder of the private PostgreSQL used when DATABASE_URL is empty"`
	LogLevel        string        `envconfig:"DASHBOARD_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat       string        `envconfig:"DASHBOARD_LOG_FORMAT" default:"text" desc:"text or json"`
	Migrate         bool          `envconfig:"DASHBOARD_MIGRATE" default:"true" desc:"apply migrations when serve starts"`

	BatchWindow      time.Duration `envconfig:"DASHBOARD_BATCH_WINDOW" default:"25ms" desc:"changes within this window after the first are merged into one refresh"`
	MaxRefreshHz     float64       `envconfig:"DASHBOARD_MAX_REFRESH_HZ" default:"10" desc:"most refreshes per second of one panel"`
	QueryTimeout     time.Duration `envconfig:"DASHBOARD_QUERY_TIMEOUT" default:"5s" desc:"statement_timeout of panel queries"`
	QueryConcurrency int           `envconfig:"DASHBOARD_QUERY_CONCURRENCY" default:"4" desc:"panel queries running at once"`
	SafetyRefresh    time.Duration `envconfig:"DASHBOARD_SAFETY_REFRESH" default:"5m" desc:"full refresh of watched panels, for changes no trigger sees; 0 turns it off"`
	MaxRows          int           `envconfig:"DASHBOARD_MAX_ROWS" default:"1000" desc:"rows kept from one panel query; more are cut and marked truncated"`
	MaxViews         int           `envconfig:"DASHBOARD_MAX_VIEWS" default:"100" desc:"distinct views (choices of variables) one dashboard may have at once; views without viewers make room, else 429"`
	ListenerPing     time.Duration `envconfig:"DASHBOARD_LISTENER_PING" default:"5s" desc:"idle time after which the listener pings its connection (in logical mode: the standby status interval)"`
	Feed             string        `envconfig:"DASHBOARD_FEED" default:"notify" desc:"change feed: notify (LISTEN/NOTIFY, works on any PostgreSQL) or logical (logical decoding; needs wal_level=logical, a role with REPLICATION, and 'dashboard feed logical' run once)"`

	Heartbeat     time.Duration `envconfig:"DASHBOARD_HEARTBEAT" default:"15s" desc:"SSE heartbeat interval"`
	StreamMaxAge  time.Duration `envconfig:"DASHBOARD_STREAM_MAX_AGE" default:"30m" desc:"SSE streams end after about this long (jittered) so clients rebalance"`
	WriteTimeout  time.Duration `envconfig:"DASHBOARD_WRITE_TIMEOUT" default:"10s" desc:"a client whose write takes longer is disconnected"`
	LongPollWait  time.Duration `envconfig:"DASHBOARD_LONGPOLL_WAIT" default:"25s" desc:"default hold of a long-poll request (clients may ask for 0-55s)"`
	MaxStreams    int           `envconfig:"DASHBOARD_MAX_STREAMS" default:"15000" desc:"open SSE streams at most; more get 503"`
	MaxStreamsIP  int           `envconfig:"DASHBOARD_MAX_STREAMS_PER_IP" default:"200" desc:"open SSE streams per client address at most"`
	MaxLongPoll   int           `envconfig:"DASHBOARD_MAX_LONGPOLL" default:"5000" desc:"waiting long-poll requests at most"`
	ShutdownGrace time.Duration `envconfig:"DASHBOARD_SHUTDOWN_TIMEOUT" default:"10s" desc:"on SIGTERM the server drains (readiness off, new requests 503, streams told to reconnect elsewhere) and exits within this time"`

	TLSCertFile string `envconfig:"DASHBOARD_TLS_CERT_FILE" desc:"PEM certificate (chain) for HTTPS with HTTP/2 on DASHBOARD_ADDR; read again when the file changes, without a restart; needs DASHBOARD_TLS_KEY_FILE"`
	TLSKeyFile  string `envconfig:"DASHBOARD_TLS_KEY_FILE" desc:"PEM private key of DASHBOARD_TLS_CERT_FILE"`
	H2C         bool   `envconfig:"DASHBOARD_H2C" default:"false" desc:"also accept HTTP/2 without TLS (h2c, prior knowledge) on DASHBOARD_ADDR: for a proxy that speaks it, and for measurement"`

	TrustedProxyCIDRs []string `envconfig:"DASHBOARD_TRUSTED_PROXY_CIDRS" desc:"comma-separated address ranges of reverse proxies whose X-Forwarded-For, X-Forwarded-Proto and DASHBOARD_USER_HEADER are believed"`
	UserHeader        string   `envconfig:"DASHBOARD_USER_HEADER" desc:"header carrying the user name set by a trusted auth proxy, e.g. X-Forwarded-User; needs DASHBOARD_TRUSTED_PROXY_CIDRS"`
	FrameAncestors    string   `envconfig:"DASHBOARD_FRAME_ANCESTORS" default:"'none'" desc:"CSP frame-ancestors sources allowed to embed pages"`

	PlaylistMinInterval time.Duration `envconfig:"DASHBOARD_PLAYLIST_MIN_INTERVAL" default:"10s" desc:"shortest time a playlist shows each dashboard; a playlist's shorter interval is raised to it (1s to 1h)"`

	PublicURL   string `envconfig:"DASHBOARD_PUBLIC_URL" desc:"the address people open (for example https://dash.example.com), for the links the program prints; empty: http:// and DASHBOARD_ADDR, with this machine's name for an address that listens on every interface"`
	MetricsAddr string `envconfig:"DASHBOARD_METRICS_ADDR" desc:"if set, serve /metrics on this address (host:port) instead of DASHBOARD_ADDR, off the public port"`
	PprofAddr   string `envconfig:"DASHBOARD_PPROF_ADDR" desc:"if set, serve net/http/pprof on this address (keep it on loopback)"`

	ProvisionDir   string `envconfig:"DASHBOARD_PROVISION_DIR" desc:"folder of dashboard YAML files that serve applies at start (a problem stops the start) and again whenever they change (read every 2s); empty: none"`
	ProvisionPrune bool   `envconfig:"DASHBOARD_PROVISION_PRUNE" default:"false" desc:"with DASHBOARD_PROVISION_DIR: also delete the dashboards that are not in the folder"`

	DemoRate float64 `envconfig:"DASHBOARD_DEMO_RATE" default:"1" desc:"demo: writes per second of the traffic generator (and of the seeded history)"`
}

// Load reads the environment and validates the result. Its errors name the
// variable at fault and what it accepts.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return c, fmt.Errorf("%s: cannot use %q: want %s", pe.KeyName, pe.Value, want(pe.TypeName))
		}
		return c, err
	}
	return c, c.Validate()
}

func want(typeName string) string {
	switch typeName {
	case "time.Duration":
		return "a duration such as 250ms, 5s or 2m"
	case "bool":
		return "true or false"
	case "int":
		return "a whole number"
	case "float64":
		return "a number"
	}
	return "a " + typeName
}

// Validate checks every value; its error lists each bad variable on its own
// line.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
	}
	if c.DatabaseURL != "" {
		if _, err := parseDatabaseURL(c.DatabaseURL); err != nil {
			bad("DATABASE_URL", "%v", err)
		}
	}
	if !validAddr(c.Addr) {
		bad("DASHBOARD_ADDR", "%q is not host:port (for example 127.0.0.1:8080)", c.Addr)
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			bad("DASHBOARD_PUBLIC_URL", "%q is not an http or https address without query, fragment or password (for example https://dash.example.com)", c.PublicURL)
		}
	}
	if c.MetricsAddr != "" && !validAddr(c.MetricsAddr) {
		bad("DASHBOARD_METRICS_ADDR", "%q is not host:port (for example 127.0.0.1:9090)", c.MetricsAddr)
	}
	if c.PprofAddr != "" && !validAddr(c.PprofAddr) {
		bad("DASHBOARD_PPROF_ADDR", "%q is not host:port (for example 127.0.0.1:6060)", c.PprofAddr)
	}
	if c.DatabaseURL == "" && strings.TrimSpace(c.DataDir) == "" {
		bad("DASHBOARD_DATA_DIR", "must not be empty when DATABASE_URL is empty")
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("DASHBOARD_LOG_LEVEL", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("DASHBOARD_LOG_FORMAT", "%q is not one of text, json", c.LogFormat)
	}
	switch c.Feed {
	case FeedNotify, FeedLogical:
	case "":
		// A Config literal (tests, dashbench) means the default.
	default:
		bad("DASHBOARD_FEED", "%q is not one of notify, logical", c.Feed)
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			bad(name, "must be above zero, got %s", d)
		}
	}
	positive("DASHBOARD_BATCH_WINDOW", c.BatchWindow)
	positive("DASHBOARD_QUERY_TIMEOUT", c.QueryTimeout)
	positive("DASHBOARD_LISTENER_PING", c.ListenerPing)
	positive("DASHBOARD_HEARTBEAT", c.Heartbeat)
	positive("DASHBOARD_STREAM_MAX_AGE", c.StreamMaxAge)
	positive("DASHBOARD_WRITE_TIMEOUT", c.WriteTimeout)
	positive("DASHBOARD_SHUTDOWN_TIMEOUT", c.ShutdownGrace)
	if c.StandbyMaxWait < 0 || c.StandbyMaxWait > time.Minute {
		// Zero, in a Config literal, means the default.
		bad("DASHBOARD_STANDBY_MAX_WAIT", "must be between 1ms and 1m, got %s", c.StandbyMaxWait)
	}
	for _, u := range strings.Fields(c.ReadDatabaseURL) {
		if pu, err := parseDatabaseURL(u); err != nil || pu == nil {
			bad("DASHBOARD_READ_DATABASE_URL", "%q is not a postgres:// URL (several are separated by spaces)", RedactURL(u))
		}
	}
	if c.ReadDatabaseURL != "" && c.DatabaseURL == "" {
		bad("DASHBOARD_READ_DATABASE_URL", "needs DATABASE_URL, the primary the standbys follow")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("DASHBOARD_TLS_CERT_FILE", "and DASHBOARD_TLS_KEY_FILE go together: set both or neither")
	}
	if c.ListenerPing > 10*time.Second {
		bad("DASHBOARD_LISTENER_PING", "must be at most 10s so a dead connection is found within 15s, got %s", c.ListenerPing)
	}
	if c.PlaylistMinInterval < 0 || c.PlaylistMinInterval > time.Hour {
		// Zero, in a Config literal, means the default.
		bad("DASHBOARD_PLAYLIST_MIN_INTERVAL", "must be between 1s and 1h, got %s", c.PlaylistMinInterval)
	}
	if c.SafetyRefresh < 0 {
		bad("DASHBOARD_SAFETY_REFRESH", "must not be negative, got %s", c.SafetyRefresh)
	}
	if c.LongPollWait < 0 || c.LongPollWait > MaxLongPollWait {
		bad("DASHBOARD_LONGPOLL_WAIT", "must be between 0s and %s, got %s", MaxLongPollWait, c.LongPollWait)
	}
	if c.MaxRefreshHz <= 0 || c.MaxRefreshHz > 1000 {
		bad("DASHBOARD_MAX_REFRESH_HZ", "must be above 0 and at most 1000, got %g", c.MaxRefreshHz)
	}
	atLeastOne := func(name string, n int) {
		if n < 1 {
			bad(name, "must be at least 1, got %d", n)
		}
	}
	atLeastOne("DASHBOARD_QUERY_CONCURRENCY", c.QueryConcurrency)
	atLeastOne("DASHBOARD_MAX_ROWS", c.MaxRows)
	atLeastOne("DASHBOARD_MAX_VIEWS", c.MaxViews)
	atLeastOne("DASHBOARD_MAX_STREAMS", c.MaxStreams)
	atLeastOne("DASHBOARD_MAX_STREAMS_PER_IP", c.MaxStreamsIP)
	atLeastOne("DASHBOARD_MAX_LONGPOLL", c.MaxLongPoll)
	for _, s := range c.TrustedProxyCIDRs {
		if _, err := netip.ParsePrefix(strings.TrimSpace(s)); err != nil {
			bad("DASHBOARD_TRUSTED_PROXY_CIDRS", "%q is not an address range such as 10.0.0.0/8", s)
		}
	}
	// The ranges alone are enough for X-Forwarded-For and -Proto; an
	// identity header without them would be believed from anyone.
	if c.UserHeader != "" && len(c.TrustedProxyCIDRs) == 0 {
		bad("DASHBOARD_USER_HEADER", "needs DASHBOARD_TRUSTED_PROXY_CIDRS, the addresses of the proxy that sets it")
	}
	if strings.ContainsAny(c.FrameAncestors, ";,\r\n") {
		bad("DASHBOARD_FRAME_ANCESTORS", "%q must be a space-separated source list without ';' or ','", c.FrameAncestors)
	}
	if c.ProvisionDir != "" && strings.TrimSpace(c.ProvisionDir) == "" {
		bad("DASHBOARD_PROVISION_DIR", "%q is blank; leave it empty for none", c.ProvisionDir)
	}
	if c.ProvisionPrune && c.ProvisionDir == "" {
		bad("DASHBOARD_PROVISION_PRUNE", "needs DASHBOARD_PROVISION_DIR, the folder whose dashboards are kept")
	}
	if c.DemoRate < 0 || c.DemoRate > 10000 {
		bad("DASHBOARD_DEMO_RATE", "must be between 0 and 10000, got %g", c.DemoRate)
	}
	return errors.Join(errs...)
}

// The change feed modes of DASHBOARD_FEED.
const (
	// FeedNotify is LISTEN/NOTIFY from gated triggers, the default.
	FeedNotify = "notify"
	// FeedLogical is logical decoding of the triggers' messages over a
	// temporary replication slot.
	FeedLogical = "logical"
)

// Logical reports whether the change feed is in logical mode; an empty
// Feed is the default, notify.
func (c *Config) Logical() bool { return c.Feed == FeedLogical }

// MaxLongPollWait is the longest a long-poll request is held, below the
// common 60 s idle timeout of proxies.
const MaxLongPollWait = 55 * time.Second

// PublicBase returns the address people open, without a trailing slash:
// DASHBOARD_PUBLIC_URL, or http:// and DASHBOARD_ADDR, with this machine's
// name where the address listens on every interface.
func (c Config) PublicBase() string {
	if c.PublicURL != "" {
		return strings.TrimSuffix(c.PublicURL, "/")
	}
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return "http://" + c.Addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
		if name, err := os.Hostname(); err == nil && name != "" {
			host = name
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

func validAddr(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return false
	}
	if host == "" {
		return true
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if len(host) > 253 {
		return false
	}
	for _, r := range host {
		if !(r == '.' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func parseDatabaseURL(s string) (*url.URL, error) {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return nil, errors.New("not a valid URL (for example postgres://user@host/db)")
		}
		return u, nil
	}
	if !strings.Contains(s, "=") {
		return nil, errors.New("not a postgres:// URL or key=value connection string")
	}
	return nil, nil
}

// Redacted returns the configuration as name=value lines with secrets shown
// as <redacted>, for logs and `dashboard help`.
func (c Config) Redacted() Config {
	c.DatabaseURL = RedactURL(c.DatabaseURL)
	urls := strings.Fields(c.ReadDatabaseURL)
	for i, u := range urls {
		urls[i] = RedactURL(u)
	}
	c.ReadDatabaseURL = strings.Join(urls, " ")
	return c
}

// RedactURL hides the password of a postgres URL or key=value string.
func RedactURL(s string) string {
	if s == "" {
		return s
	}
	if u, err := parseDatabaseURL(s); err == nil && u != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "redacted")
			return strings.Replace(u.String(), ":redacted@", ":<redacted>@", 1)
		}
		return s
	}
	fields := strings.Fields(s)
	for i, f := range fields {
		if strings.HasPrefix(strings.ToLower(f), "password=") {
			fields[i] = "password=<redacted>"
		}
	}
	return strings.Join(fields, " ")
}

// PrintHelp writes every variable with its default and meaning.
func PrintHelp(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	err := envconfig.Usagef("", &Config{}, tw, "{{range .}}{{usage_key .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}")
	if err != nil {
		return err
	}
	return tw.Flush()
}
