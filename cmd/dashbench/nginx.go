package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The strings deploy/nginx/dashboard.conf documents for rendering it by
// plain text replacement.
const (
	nginxUpstreamBegin = "# upstream servers: begin"
	nginxUpstreamEnd   = "# upstream servers: end"
	nginxListen        = "listen 443 ssl http2;"
	nginxCert          = "/etc/ssl/dashboard/fullchain.pem"
	nginxKey           = "/etc/ssl/dashboard/privkey.pem"
)

// nginxFileLimit is the open-files limit of nginx's workers: the machine's
// cap per process. With -servers 3 at 3,000 clients each, a worker may
// hold every client connection and its upstream connection, 18,000.
const nginxFileLimit = 20000

// nginxMain is the main configuration around the shipped file: what the
// shipped file leaves to it (pid, error_log, the events block), the worker
// limits for N=9,000 streams through one process, and every path inside
// the bench's own folder so that no system nginx is disturbed.
const nginxMain = `# Rendered by dashbench; removed when the run ends.
worker_processes auto;
worker_rlimit_nofile %[2]d;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events {
	worker_connections %[3]d;
}
http {
	access_log off;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;
	include %[1]s/dashboard.conf;
}
`

// renderNginx fills in the shipped server configuration for the bench:
// the upstream servers, a plain-HTTP listen line on addr (so the raw
// HTTP/1.1 clients compare like for like with a server measured alone;
// the TLS settings stay and read a certificate of the bench's), and a
// response header naming the server that answered.
func renderNginx(conf string, upstreams []string, addr, cert, key string) (string, error) {
	// The directives and markers on lines of their own, not the comments
	// that quote them.
	lines := strings.Split(conf, "\n")
	find := func(s string) int {
		at := -1
		for i, line := range lines {
			if strings.TrimSpace(line) == s {
				if at >= 0 {
					return -2 // twice: which one is meant?
				}
				at = i
			}
		}
		return at
	}
	begin, end, listen := find(nginxUpstreamBegin), find(nginxUpstreamEnd), find(nginxListen)
	if begin < 0 || end < begin || listen < 0 || (listen > begin && listen < end) ||
		!strings.Contains(conf, nginxCert) || !strings.Contains(conf, nginxKey) {
		return "", fmt.Errorf("the nginx configuration lacks the placeholders it documents (%q ... %q, %q, the certificate paths), each on a line of its own",
			nginxUpstreamBegin, nginxUpstreamEnd, nginxListen)
	}
	indent := func(i int) string { return lines[i][:len(lines[i])-len(strings.TrimLeft(lines[i], " \t"))] }
	// reuseport: the kernel spreads the connections over the workers.
	in := indent(listen)
	lines[listen] = in + "listen " + addr + " reuseport;\n" + in + "add_header " + upstreamHeader + " $upstream_addr always;"
	var servers []string
	in = indent(begin)
	for _, u := range upstreams {
		servers = append(servers, in+"server "+strings.TrimPrefix(u, "http://")+" max_fails=0;")
	}
	out := slices.Concat(lines[:begin+1], servers, lines[end:])
	conf = strings.Join(out, "\n")
	conf = strings.ReplaceAll(conf, nginxCert, cert)
	conf = strings.ReplaceAll(conf, nginxKey, key)
	return conf, nil
}

// findNginxConf finds deploy/nginx/dashboard.conf in the module around
// the working directory (go run ./cmd/dashbench runs there).
func findNginxConf() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "deploy", "nginx", "dashboard.conf")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("deploy/nginx/dashboard.conf not found above the working directory: run inside the module or pass -nginx-conf")
		}
		dir = parent
	}
}

// findNginx is bin, or nginx on PATH, or Debian's /usr/sbin/nginx.
func findNginx(bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", errors.New("nginx not found: apt-get install nginx-light (or nginx), or pass -nginx-bin")
}

// nginxProc is an nginx the bench started in front of its servers.
type nginxProc struct {
	*process
	url string
	dir string
}

// startNginx renders confFile (empty: the module's
// deploy/nginx/dashboard.conf) for upstreams on a free local port and
// starts nginx in the foreground, in a folder of its own.
func startNginx(ctx context.Context, bin, confFile string, upstreams []string, stderr io.Writer) (*nginxProc, error) {
	bin, err := findNginx(bin)
	if err != nil {
		return nil, err
	}
	if confFile == "" {
		if confFile, err = findNginxConf(); err != nil {
			return nil, err
		}
	}
	shipped, err := os.ReadFile(confFile)
	if err != nil {
		return nil, fmt.Errorf("reading the nginx configuration: %w", err)
	}
	dir, err := os.MkdirTemp("", "dashbench-nginx")
	if err != nil {
		return nil, err
	}
	// nginx's workers run as nobody when it is started as root.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p := &nginxProc{dir: dir}
	fail := func(err error) (*nginxProc, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := writeSelfSigned(cert, key); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	site, err := renderNginx(string(shipped), upstreams, addr, cert, key)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", confFile, err))
	}
	main := fmt.Sprintf(nginxMain, dir, nginxFileLimit, nginxFileLimit-1000)
	for name, body := range map[string]string{"dashboard.conf": site, "nginx.conf": main} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return fail(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return fail(err)
	}
	// -e: the error log before the configuration is read, too, is ours
	// (the compiled-in one may not be writable).
	args := []string{"-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")}
	if out, err := exec.CommandContext(ctx, bin, append([]string{"-t", "-q"}, args...)...).CombinedOutput(); err != nil {
		return fail(fmt.Errorf("nginx -t on the rendered configuration (%s): %v\n%s", dir, err, out))
	}
	cmd := exec.Command(bin, append(args, "-g", "daemon off;")...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if p.process, err = startProcess(cmd); err != nil {
		return fail(fmt.Errorf("starting nginx: %w", err))
	}
	p.url = "http://" + addr
	if err := p.awaitOK(ctx, p.url+"/healthz", 15*time.Second); err != nil {
		if _, exited := err.(errExited); exited {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("nginx %w\n%s", err, log)
		}
		p.stop()
		return nil, fmt.Errorf("nginx: %w", err)
	}
	return p, nil
}

// stop ends nginx (SIGTERM is its fast shutdown; SIGKILL after 10 s) and
// removes its folder.
func (p *nginxProc) stop() {
	p.process.stop(10 * time.Second)
	os.RemoveAll(p.dir)
}

// workerFileLimit is the lowest open-files limit of nginx's workers, as
// the kernel holds it (worker_rlimit_nofile, or what nginx inherited if
// it could not set that); 0 when unknown.
func (p *nginxProc) workerFileLimit() int {
	low := 0
	for _, pid := range p.procs()[1:] {
		b, err := os.ReadFile("/proc/" + pid + "/limits")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					if n, err := strconv.Atoi(f[0]); err == nil && (low == 0 || n < low) {
						low = n
					}
				}
			}
		}
	}
	return low
}

// procs is nginx's master and its workers (the master's children).
func (p *nginxProc) procs() []string {
	master := strconv.Itoa(p.cmd.Process.Pid)
	out := []string{master}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		if f := procStat(e.Name()); len(f) > 1 && f[1] == master {
			out = append(out, e.Name())
		}
	}
	return out
}

// cpuSeconds is nginx's CPU time, master and workers; 0 without nginx.
func (p *nginxProc) cpuSeconds() float64 {
	if p == nil {
		return 0
	}
	var t float64
	for _, pid := range p.procs() {
		if f := procStat(pid); len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64)
			s, _ := strconv.ParseFloat(f[12], 64)
			t += u + s
		}
	}
	return t / 100 // USER_HZ
}

// rss is nginx's resident memory in bytes, master and workers.
func (p *nginxProc) rss() float64 {
	if p == nil {
		return 0
	}
	var total float64
	for _, pid := range p.procs() {
		b, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				total += kb * 1024
			}
		}
	}
	return total
}

// procStat is /proc/pid/stat's fields after the command: f[0] is the
// state, f[1] the parent, f[11] and f[12] utime and stime.
func procStat(pid string) []string {
	s, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil
	}
	_, rest, _ := bytes.Cut(s, []byte(") "))
	return strings.Fields(string(rest))
}

// writeSelfSigned writes a throwaway certificate for 127.0.0.1: the
// shipped file's TLS settings need one to load, though the bench's listen
// line is plain HTTP.
func writeSelfSigned(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "dashbench"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	// Readable by the workers (nobody): the folder is removed at the end.
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o644)
}
