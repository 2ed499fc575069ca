package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// authoringDoc is the newcomer's walk-through that TestAuthoringDoc runs.
const authoringDoc = "../../docs/authoring.md"

// docStep is one thing docs/authoring.md asks the reader to do: a shell
// block to run, a page to open, or text the open page must come to show.
type docStep struct {
	line  int
	shell string // a fenced sh block
	open  string // <!-- test: open PATH -->
	see   string // <!-- test: see TEXT -->
}

// docSteps reads the fenced shell blocks (```sh, ```bash) and the test
// comments of a Markdown file, in order.
func docSteps(t *testing.T, path string) []docStep {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var steps []docStep
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		switch {
		case l == "```sh" || l == "```bash" || l == "```shell":
			start := i + 1
			var body []string
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
				body = append(body, lines[i])
			}
			steps = append(steps, docStep{line: start, shell: strings.Join(body, "\n")})
		case strings.HasPrefix(l, "<!-- test: open ") && strings.HasSuffix(l, "-->"):
			steps = append(steps, docStep{line: i + 1, open: strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, "<!-- test: open "), "-->"))})
		case strings.HasPrefix(l, "<!-- test: see ") && strings.HasSuffix(l, "-->"):
			steps = append(steps, docStep{line: i + 1, see: strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, "<!-- test: see "), "-->"))})
		}
	}
	return steps
}

// TestAuthoringDoc runs docs/authoring.md as a newcomer would: every
// fenced shell block, as written and in order, in one shell, with a fresh
// home folder (so a fresh data folder) and the repository as the working
// folder; and it opens the pages the text asks for in Chromium and waits
// for what the reader is told to see there. The server the walk-through
// starts in the background is stopped at the end, with its PostgreSQL.
func TestAuthoringDoc(t *testing.T) {
	steps := docSteps(t, authoringDoc)
	var shells, sees int
	for _, s := range steps {
		if s.shell != "" {
			shells++
		}
		if s.see != "" {
			sees++
		}
	}
	if shells < 5 || sees < 2 {
		t.Fatalf("%s: found %d shell blocks and %d test: see comments; the walk-through has more", authoringDoc, shells, sees)
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// The private PostgreSQL runs as the postgres user when we are root:
	// it must be able to reach its folder under this one, so the home is
	// not under t.TempDir (whose parent only root may enter).
	home, err := os.MkdirTemp("", "authoring")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := os.Chmod(home, 0o711); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "DASHBOARD_ADDR=" + addr, "LANG=C.UTF-8"}
	// The Go build in the walk-through uses the test's caches and
	// toolchain, not a fresh home's.
	for _, name := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOTOOLCHAIN", "GOFLAGS", "GOPROXY", "GONOSUMDB", "GOSUMDB", "GOROOT"} {
		out, err := exec.Command("go", "env", name).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", name, err)
		}
		if v := strings.TrimSpace(string(out)); v != "" {
			env = append(env, name+"="+v)
		}
	}
	if v := os.Getenv("GOTOOLCHAIN"); v != "" {
		env = append(env, "GOTOOLCHAIN="+v)
	}

	sh := exec.Command("bash", "--noprofile", "--norc", "-e", "-u", "-o", "pipefail")
	sh.Dir, sh.Env = repo, env
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	sh.Stdout, sh.Stderr = pw, pw
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sh.Wait(); pw.Close() }()
	t.Cleanup(func() {
		// The shell and everything it started in the background: the
		// server stops its PostgreSQL on SIGTERM.
		syscall.Kill(-sh.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
		}
		stopPostgres(home)
	})
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var output []string
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(home, "dashboard-tutorial", "server.log"))
			t.Logf("server.log:\n%s", log)
		}
	})
	run := func(s docStep) {
		t.Helper()
		marker := fmt.Sprintf("__authoring_step_%d_done__", s.line)
		fmt.Fprintf(stdin, "%s\necho %s\n", s.shell, marker)
		timeout := time.NewTimer(4 * time.Minute)
		defer timeout.Stop()
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("%s:%d: the shell exited (%v) running:\n%s\noutput:\n%s", authoringDoc, s.line, <-exited, s.shell, strings.Join(output, "\n"))
				}
				if line == marker {
					return
				}
				output = append(output, line)
			case <-timeout.C:
				t.Fatalf("%s:%d: still running after 4 minutes:\n%s\noutput:\n%s", authoringDoc, s.line, s.shell, strings.Join(output, "\n"))
			}
		}
	}

	var tab context.Context
	for _, s := range steps {
		switch {
		case s.shell != "":
			run(s)
		case s.open != "":
			if tab == nil {
				tab = newBrowser(t)
			}
			navigate(t, tab, &testServer{URL: "http://" + addr}, s.open)
		case s.see != "":
			if tab == nil {
				t.Fatalf("%s:%d: test: see before any test: open", authoringDoc, s.line)
			}
			waitJS(t, tab, fmt.Sprintf("%s:%d: the page to show %q", authoringDoc, s.line, s.see),
				"document.body.innerText.includes("+strconv.Quote(s.see)+")")
		}
	}
	t.Logf("walk-through output:\n%s", strings.Join(output, "\n"))
}

// stopPostgres stops a private PostgreSQL left running under home (the
// walk-through's server stops it itself; this is for a test that failed
// half-way).
func stopPostgres(home string) {
	filepath.WalkDir(home, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "postmaster.pid" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0]))
		if err == nil && pid > 0 {
			syscall.Kill(pid, syscall.SIGTERM)
		}
		return nil
	})
}
