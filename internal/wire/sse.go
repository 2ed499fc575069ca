// Package wire owns the bytes a client receives for an update, and nothing
// else: the Server-Sent Events encoding (messages, comments and the retry
// field, as defined by the WHATWG HTML standard, "Server-sent events",
// section "Parsing an event stream"), the named control events the page
// understands (heartbeat, reconnect, gone), the presence event and header
// values (who is watching), and the long-poll body. Both
// transports carry the same partials, which internal/views renders; the
// fan-out (internal/hub, internal/stream) only moves the bytes made here.
//
// It does not handle HTTP: headers, flushing, write deadlines and heartbeat
// timing belong to the code that writes the bytes. The encoders append to a
// caller-owned buffer so a frame can be encoded once and the same bytes
// written to every subscriber; they do not allocate when the buffer has
// enough capacity.
//
// What round-trips: an event stream cannot tell CRLF, CR and LF apart inside a
// payload, because the parser splits lines on all three and joins data lines
// with LF. AppendEvent therefore normalises every line break in data to LF, and
// a conforming parser hands back exactly the LF-normalised payload. Payloads
// already using LF line breaks round-trip byte for byte.
package wire

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// Errors returned by AppendEvent for values that cannot be encoded.
var (
	// ErrInvalidID means the id contains CR, LF or NUL. CR and LF would end
	// the field early; parsers ignore an id field that contains NUL.
	ErrInvalidID = errors.New("wire: id contains CR, LF or NUL")
	// ErrInvalidEvent means the event name contains CR or LF.
	ErrInvalidEvent = errors.New("wire: event name contains CR or LF")
)

// AppendEvent appends one message to dst and returns the extended buffer.
//
// The message has an "event:" line when event is not empty (an empty event
// dispatches as the default "message" type), an "id:" line when id is not
// empty, one "data: " line for every line of data, and a terminating blank
// line. Every line of data is written after "data: " even when it is empty or
// starts with a space or a colon, because parsers strip exactly one space
// after the colon; so leading spaces and colons survive. Line breaks in data
// (CRLF, CR or LF) end a data line; the parser rejoins lines with LF.
// Empty or nil data still writes one empty data line, so the message is
// dispatched (an event with no data line is dropped by EventSource).
//
// An empty id cannot be sent (it would reset the client's last event ID);
// callers that need a reset must write it themselves. On error dst is
// returned unchanged.
func AppendEvent(dst []byte, id, event string, data []byte) ([]byte, error) {
	if strings.ContainsAny(id, "\r\n\x00") {
		return dst, ErrInvalidID
	}
	if strings.ContainsAny(event, "\r\n") {
		return dst, ErrInvalidEvent
	}
	if event != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, event...)
		dst = append(dst, '\n')
	}
	if id != "" {
		dst = append(dst, "id: "...)
		dst = append(dst, id...)
		dst = append(dst, '\n')
	}
	// lf is the index of the next LF in data, kept across lines so payloads
	// with many lone CRs are still scanned in linear time.
	lf := bytes.IndexByte(data, '\n')
	for {
		end := lf // end of this line: the first CR or LF
		if end < 0 {
			end = bytes.IndexByte(data, '\r')
		} else if cr := bytes.IndexByte(data[:end], '\r'); cr >= 0 {
			end = cr
		}
		dst = append(dst, "data: "...)
		if end < 0 {
			dst = append(dst, data...)
			dst = append(dst, '\n')
			break
		}
		dst = append(dst, data[:end]...)
		dst = append(dst, '\n')
		next := end + 1
		if data[end] == '\r' && next < len(data) && data[next] == '\n' {
			next++ // CRLF is one line break
		}
		data = data[next:]
		if lf >= 0 && lf < next {
			lf = bytes.IndexByte(data, '\n')
		} else if lf >= 0 {
			lf -= next
		}
	}
	return append(dst, '\n'), nil
}

// AppendComment appends text as comment lines (": text"), which parsers
// ignore; servers use them to flush a stream open and as heartbeats that
// keep proxies from timing out an idle connection. A line break in text
// starts a new comment line, so text can never end the comment early and
// inject fields. No blank line is written: a comment does not dispatch
// anything and may appear anywhere between fields.
func AppendComment(dst []byte, text string) []byte {
	for {
		i := strings.IndexAny(text, "\r\n")
		line := text
		if i >= 0 {
			line = text[:i]
		}
		dst = append(dst, ':')
		if line != "" {
			dst = append(dst, ' ')
			dst = append(dst, line...)
		}
		dst = append(dst, '\n')
		if i < 0 {
			return dst
		}
		if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
			i++
		}
		text = text[i+1:]
	}
}

// AppendRetry appends a "retry:" field line telling the client how many
// milliseconds to wait before reconnecting; negative values are written as 0.
//
// No blank line follows. EventSource applies retry as soon as it parses the
// line, but htmx's hx-sse extension only honours retry on a message it
// dispatches, so callers that serve hx-sse should write the retry line
// directly in front of a message (AppendRetry then AppendEvent) to make both
// clients apply it.
func AppendRetry(dst []byte, ms int) []byte {
	if ms < 0 {
		ms = 0
	}
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, int64(ms), 10)
	return append(dst, '\n')
}
