package wire

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// event is one dispatched message as a WHATWG EventSource would see it.
type event struct {
	typ, data, lastEventID string
}

// stream is the result of interpreting a whole event stream.
type stream struct {
	events []event
	retry  int // -1 when no valid retry field was seen
}

// decode interprets an event stream following the WHATWG HTML standard,
// "9.2.6 Interpreting an event stream", written independently of the encoder:
// decode as UTF-8, drop one leading BOM, split lines on CRLF, CR or LF,
// ignore comments, split fields at the first colon, strip one leading space
// from the value, and dispatch on a blank line. A final line without a line
// terminator is never processed, like an unterminated block at end of stream
// is never dispatched.
func decode(s string) stream {
	s = strings.TrimPrefix(s, "\uFEFF")
	out := stream{retry: -1}
	var data strings.Builder
	var typ, lastID string
	for {
		// Find the end of the next line: CRLF, lone CR or lone LF.
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			break // incomplete line: discarded at end of stream
		}
		line := s[:i]
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			s = s[i+2:]
		} else {
			s = s[i+1:]
		}

		if line == "" { // dispatch the event
			if data.Len() == 0 {
				typ = ""
				continue
			}
			d := strings.TrimSuffix(data.String(), "\n")
			t := typ
			if t == "" {
				t = "message"
			}
			out.events = append(out.events, event{typ: t, data: d, lastEventID: lastID})
			data.Reset()
			typ = ""
			continue
		}
		if line[0] == ':' { // comment
			continue
		}
		field, value := line, ""
		if c := strings.IndexByte(line, ':'); c >= 0 {
			field, value = line[:c], line[c+1:]
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			typ = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
		case "id":
			if !strings.ContainsRune(value, 0) {
				lastID = value
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				n := 0
				for _, c := range value {
					n = n*10 + int(c-'0')
				}
				out.retry = n
			}
		}
	}
	return out
}

// normalizeLF replaces CRLF and lone CR with LF: the form a payload has after
// an event stream round trip.
func normalizeLF(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

func mustEvent(t testing.TB, dst []byte, id, typ, data string) []byte {
	t.Helper()
	b, err := AppendEvent(dst, id, typ, []byte(data))
	if err != nil {
		t.Fatalf("AppendEvent(%q, %q, %q): %v", id, typ, data, err)
	}
	return b
}

func TestAppendEventWire(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, id, event, data, want string
	}{
		{"plain", "", "", "hello", "data: hello\n\n"},
		{"empty data", "", "", "", "data: \n\n"},
		{"id and event", "0/16B3748-ab12", "heartbeat", "", "event: heartbeat\nid: 0/16B3748-ab12\ndata: \n\n"},
		{"lines", "7", "", "a\nb\r\nc\rd", "id: 7\ndata: a\ndata: b\ndata: c\ndata: d\n\n"},
		{"trailing newline", "", "", "a\n", "data: a\ndata: \n\n"},
		{"leading space and colon", "", "", " x\n:y\ndata: z", "data:  x\ndata: :y\ndata: data: z\n\n"},
		{"crlf at end", "", "", "a\r\n", "data: a\ndata: \n\n"},
		{"cr then lf separate lines", "", "", "a\r\r\nb", "data: a\ndata: \ndata: b\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := string(mustEvent(t, nil, tt.id, tt.event, tt.data))
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAppendEventDecodes(t *testing.T) {
	t.Parallel()
	var b []byte
	b = AppendComment(b, "hi")
	b = AppendRetry(b, 2500)
	b = mustEvent(t, b, "1-aa", "", "<hx-partial hx-target=\"#panel-a\">\n  <p>1</p>\n</hx-partial>")
	b = AppendComment(b, "")
	b = mustEvent(t, b, "", "heartbeat", "")
	b = mustEvent(t, b, "2-bb", "", "x")

	got := decode(string(b))
	want := []event{
		{"message", "<hx-partial hx-target=\"#panel-a\">\n  <p>1</p>\n</hx-partial>", "1-aa"},
		{"heartbeat", "", "1-aa"},
		{"message", "x", "2-bb"},
	}
	if len(got.events) != len(want) {
		t.Fatalf("got %d events %q, want %d", len(got.events), got.events, len(want))
	}
	for i := range want {
		if got.events[i] != want[i] {
			t.Errorf("event %d: got %+v, want %+v", i, got.events[i], want[i])
		}
	}
	if got.retry != 2500 {
		t.Errorf("retry: got %d, want 2500", got.retry)
	}
}

func TestAppendEventInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, id, event string
		want            error
	}{
		{"id LF", "a\nb", "", ErrInvalidID},
		{"id CR", "a\rb", "", ErrInvalidID},
		{"id NUL", "a\x00b", "", ErrInvalidID},
		{"event LF", "1", "x\ndata: injected", ErrInvalidEvent},
		{"event CR", "1", "x\r", ErrInvalidEvent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dst := []byte("keep")
			got, err := AppendEvent(dst, tt.id, tt.event, []byte("d"))
			if !errors.Is(err, tt.want) {
				t.Errorf("err: got %v, want %v", err, tt.want)
			}
			if string(got) != "keep" {
				t.Errorf("dst: got %q, want it unchanged", got)
			}
		})
	}
}

func TestIDs(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"1", "0/16B3748-9f86d081884c", " leading-space", "trailing ", ":colon", "ünïcode", "a:b: c"} {
		b := mustEvent(t, nil, id, "", "d")
		got := decode(string(b))
		if len(got.events) != 1 || got.events[0].lastEventID != id {
			t.Errorf("id %q: got %+v, want one event with that id", id, got.events)
		}
	}
}

func TestAppendComment(t *testing.T) {
	t.Parallel()
	tests := []struct{ text, want string }{
		{"", ":\n"},
		{"ping", ": ping\n"},
		{"a\nb", ": a\n: b\n"},
		{"a\r\nevent: x\rdata: y\n", ": a\n: event: x\n: data: y\n:\n"},
	}
	for _, tt := range tests {
		got := string(AppendComment(nil, tt.text))
		if got != tt.want {
			t.Errorf("AppendComment(%q): got %q, want %q", tt.text, got, tt.want)
		}
		// A comment, however it is worded, never dispatches anything.
		if d := decode(got + "\n"); len(d.events) != 0 || d.retry != -1 {
			t.Errorf("AppendComment(%q) decoded to %+v, want nothing", tt.text, d)
		}
	}
}

func TestAppendRetry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ms   int
		want string
	}{{0, "retry: 0\n"}, {1500, "retry: 1500\n"}, {-3, "retry: 0\n"}}
	for _, tt := range tests {
		if got := string(AppendRetry(nil, tt.ms)); got != tt.want {
			t.Errorf("AppendRetry(%d): got %q, want %q", tt.ms, got, tt.want)
		}
	}
}

func TestDecoderBOMAndLineEndings(t *testing.T) {
	t.Parallel()
	// Checks the test decoder itself against hand-written streams.
	got := decode("\uFEFFdata:a\r\ndata: b\rid: 9\n\r\nevent:x\ndata\n\ndata: c")
	want := []event{{"message", "a\nb", "9"}, {"x", "", "9"}}
	if len(got.events) != len(want) {
		t.Fatalf("got %+v, want %+v", got.events, want)
	}
	for i := range want {
		if got.events[i] != want[i] {
			t.Errorf("event %d: got %+v, want %+v", i, got.events[i], want[i])
		}
	}
}

var seeds = []string{
	"",
	"hello",
	"\n",
	"\r",
	"\r\n",
	"\n\n",
	"a\nb",
	"a\r\nb",
	"a\rb",
	"a\r\r\nb",
	"a\n\r",
	"trailing\n",
	" leading space",
	"  two spaces",
	":colon first",
	"data: looks like a field",
	"id: 5\nevent: x\nretry: 1",
	"\n: comment\n\ndata:\n",
	"\uFEFFbom first",
	"<hx-partial hx-target=\"#panel-a\" hx-swap=\"outerHTML\">\n  <div id=\"panel-a\">ünïcode ✓</div>\n</hx-partial>",
}

func FuzzRoundTrip(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		if !utf8.ValidString(data) || strings.ContainsRune(data, 0) {
			t.Skip()
		}
		b, err := AppendEvent(nil, "v1", "", []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		// The message must also survive being framed by comments and a
		// following message, as on a real stream.
		stream := ": open\n" + string(b) + ": ping\n"
		b, _ = AppendEvent([]byte(stream), "", "", []byte("next"))
		got := decode(string(b))
		want := normalizeLF(data)
		if len(got.events) != 2 {
			t.Fatalf("got %d events %q, want 2", len(got.events), got.events)
		}
		if got.events[0].data != want {
			t.Errorf("got %q, want %q", got.events[0].data, want)
		}
		if got.events[0].typ != "message" || got.events[0].lastEventID != "v1" {
			t.Errorf("got %+v, want type message and id v1", got.events[0])
		}
		if got.events[1].data != "next" {
			t.Errorf("following event: got %q, want %q", got.events[1].data, "next")
		}
	})
}

func TestAllocs(t *testing.T) {
	data := []byte("<hx-partial hx-target=\"#panel-a\">\n<p>1</p>\r\n</hx-partial>")
	buf := make([]byte, 0, 4096)
	n := testing.AllocsPerRun(100, func() {
		b, _ := AppendEvent(buf[:0], "0/16B3748-ab12", "heartbeat", data)
		b = AppendComment(b, "ping")
		_ = AppendRetry(b, 3000)
	})
	if n != 0 {
		t.Errorf("got %v allocations, want 0", n)
	}
}

func BenchmarkAppendEvent(b *testing.B) {
	data := []byte(strings.Repeat("<tr><td>row</td><td>42</td></tr>\n", 64))
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		buf, _ = AppendEvent(buf[:0], "0/16B3748-9f86d081884c", "", data)
	}
}

func BenchmarkAppendComment(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendComment(buf[:0], "heartbeat")
	}
}

func BenchmarkAppendRetry(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRetry(buf[:0], 2750)
	}
}

// TestPresenceEvent: presence is a named event without an id (it never
// moves the client's last event ID), JSON data on one line; the labels
// header is ASCII whatever the labels hold and decodes to the same JSON.
func TestPresenceEvent(t *testing.T) {
	p := Presence{Watching: 12, Labels: []string{"lobby TV", "ops, laptop", "Küche\nTV"}, More: 3}
	got := string(PresenceEvent(p))
	want := "event: presence\ndata: {\"watching\":12,\"labels\":[\"lobby TV\",\"ops, laptop\",\"Küche\\nTV\"],\"more\":3}\n\n"
	if got != want {
		t.Errorf("event: got %q, want %q", got, want)
	}
	if got, want := string(PresenceEvent(Presence{Watching: 2})), "event: presence\ndata: {\"watching\":2}\n\n"; got != want {
		t.Errorf("count-only event: got %q, want %q", got, want)
	}
	h := PresenceLabelsHeader(p)
	for _, c := range []byte(h) {
		if c < 0x21 || c > 0x7e {
			t.Fatalf("header %q holds byte %#x", h, c)
		}
	}
	dec, err := url.PathUnescape(h)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"labels":["lobby TV","ops, laptop","Küche\nTV"],"more":3}`; dec != want {
		t.Errorf("header decodes to %s, want %s", dec, want)
	}
}
