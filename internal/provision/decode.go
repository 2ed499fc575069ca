package provision

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong in a dashboard file.
type Problem struct {
	File string // as given: relative to the directory
	Line int    // 0 when no line applies
	Msg  string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return p.File + ": " + p.Msg
}

// Problems is every problem found in a directory, in file and line order,
// each as file:line: message. It is the error of LoadDir, Lint and Apply
// when the files are at fault.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		return ps[i].Line < ps[j].Line
	})
}

// positions knows the line of every value of a parsed file, by path:
// "title", "panels[2].grid.width", "variables[0]".
type positions struct {
	lines map[string]int
	// blocks holds, for a string written as a literal block (|), the line
	// of its first character, so that a line of SQL maps to a line of the
	// file.
	blocks map[string]int
}

// line returns the line of path, or of the nearest enclosing value that
// has one.
func (p *positions) line(path string) int {
	for {
		if l, ok := p.lines[path]; ok {
			return l
		}
		i := max(strings.LastIndexByte(path, '.'), strings.LastIndexByte(path, '['))
		if i <= 0 {
			return p.lines[""]
		}
		path = path[:i]
	}
}

// decoder fills a File from a yaml.Node, strictly: unknown and repeated
// keys, values of the wrong type and values outside the tags' rules are
// problems at their line.
type decoder struct {
	file  string
	probs []Problem
	pos   positions
	what  string // "dashboard" or "playlist", for messages about the whole file
}

func (d *decoder) problem(line int, format string, args ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// parse reads one dashboard file.
func parse(name string, data []byte) (*File, *positions, []Problem) {
	f := &File{}
	pos, probs := parseInto(name, data, f, "dashboard", "slug, title, panels")
	if pos == nil {
		return nil, nil, probs
	}
	return f, pos, probs
}

// parseInto reads one file of one YAML document, a mapping, into the
// struct target points to; what names the kind of file and keys its usual
// keys ("slug, title, panels"), for messages. The positions are nil when the file is not such a
// mapping.
func parseInto(name string, data []byte, target any, what, keys string) (*positions, []Problem) {
	d := &decoder{file: name, pos: positions{lines: map[string]int{}, blocks: map[string]int{}}, what: what}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.problem(0, "empty file: want a %s (%s)", what, keys)
		} else {
			d.syntaxError(err)
		}
		return nil, d.probs
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		d.problem(next.Line, "a second YAML document: one %s per file", what)
		return nil, d.probs
	} else if !errors.Is(err, io.EOF) {
		d.syntaxError(err)
		return nil, d.probs
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d.pos.lines[""] = root.Line
	if root.Kind != yaml.MappingNode {
		and := keys
		if i := strings.LastIndex(keys, ", "); i >= 0 {
			and = keys[:i] + " and " + keys[i+2:]
		}
		d.problem(root.Line, "want a mapping with %s, got %s", and, kindName(root))
		return nil, d.probs
	}
	d.value(root, reflect.ValueOf(target).Elem(), "", reflect.StructField{}, 0)
	return &d.pos, d.probs
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns the parser's "yaml: line N: msg" into a problem at N.
func (d *decoder) syntaxError(err error) {
	for _, msg := range strings.Split(err.Error(), "\n") {
		if m := yamlLine.FindStringSubmatch(strings.TrimSpace(msg)); m != nil {
			n, _ := strconv.Atoi(m[1])
			d.problem(n, "%s", m[2])
			continue
		}
		msg = strings.TrimPrefix(strings.TrimSpace(msg), "yaml: ")
		if msg != "" && msg != "unmarshal errors:" {
			d.problem(0, "%s", msg)
		}
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// value decodes n into v at path; sf is the struct field v belongs to
// (its tags hold the rules), depth guards against alias loops.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, sf reflect.StructField, depth int) {
	if depth > 64 {
		d.problem(n.Line, "%s: nested too deeply", path)
		return
	}
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	switch v.Kind() {
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		d.value(n, e.Elem(), path, sf, depth+1)
		v.Set(e)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.problem(n.Line, "%s: want a mapping, got %s", path, kindName(n))
			return
		}
		d.mapping(n, v, path, depth)
	case reflect.Map:
		d.mapValue(n, v, path, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.problem(n.Line, "%s: want a list, got %s", path, kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), 0, len(n.Content))
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.pos.lines[p] = item.Line
			e := reflect.New(v.Type().Elem()).Elem()
			if item.ShortTag() == "!!null" {
				d.problem(item.Line, "%s: empty entry", p)
			} else {
				d.value(item, e, p, reflect.StructField{}, depth+1)
			}
			s = reflect.Append(s, e)
		}
		v.Set(s)
		if most, ok := tagInt(sf, "maxItems"); ok && s.Len() > most {
			d.problem(n.Line, "%s: %d entries, at most %d allowed", path, s.Len(), most)
		}
	default:
		d.scalar(n, v, path, sf)
	}
}

// mapping decodes a mapping into the struct v.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string, depth int) {
	fields := fieldsOf(v.Type())
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.problem(k.Line, "%s: keys must be names, got %s", join(path, "?"), kindName(k))
			continue
		}
		key := k.Value
		p := join(path, key)
		if key == "<<" {
			d.problem(k.Line, "%s: merge keys (<<) are not supported; write the keys out", p)
			continue
		}
		if first, ok := seen[key]; ok {
			d.problem(k.Line, "%s: given twice (first at line %d)", p, first)
			continue
		}
		seen[key] = k.Line
		f := fields.byName(key)
		if f == nil {
			d.problem(k.Line, "%s: unknown key; known keys here: %s", p, strings.Join(fields.names(), ", "))
			continue
		}
		if val.ShortTag() == "!!null" {
			continue // absent, as if not written
		}
		d.pos.lines[p] = k.Line
		d.value(val, v.FieldByIndex(f.index), p, f.sf, depth+1)
	}
	for _, f := range fields {
		if f.required {
			if _, ok := d.pos.lines[join(path, f.name)]; !ok {
				where := "the " + d.what
				if path != "" {
					where = path
				}
				d.problem(n.Line, "%s: missing key %s", where, f.name)
			}
		}
	}
}

// mapValue decodes a mapping with names for keys into the map v (a
// playlist item's variables): each key once, each value decoded as the
// map's element type.
func (d *decoder) mapValue(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.MappingNode {
		d.problem(n.Line, "%s: want a mapping, got %s", path, kindName(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" || k.Value == "<<" {
			d.problem(k.Line, "%s: keys must be names, got %s", join(path, "?"), kindName(k))
			continue
		}
		p := join(path, k.Value)
		if first, ok := seen[k.Value]; ok {
			d.problem(k.Line, "%s: given twice (first at line %d)", p, first)
			continue
		}
		seen[k.Value] = k.Line
		d.pos.lines[p] = k.Line
		e := reflect.New(v.Type().Elem()).Elem()
		d.value(val, e, p, reflect.StructField{}, depth+1)
		m.SetMapIndex(reflect.ValueOf(k.Value), e)
	}
	v.Set(m)
}

// scalar decodes a string, whole number, number or boolean.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string, sf reflect.StructField) {
	if n.Kind != yaml.ScalarNode {
		d.problem(n.Line, "%s: want %s, got %s", path, wantOf(v.Kind()), kindName(n))
		return
	}
	tag := n.ShortTag()
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value)
		if n.Style&yaml.LiteralStyle != 0 {
			d.pos.blocks[path] = n.Line + 1
		}
	case reflect.Int:
		var i int64
		if tag != "!!int" || n.Decode(&i) != nil {
			d.problem(n.Line, "%s: want a whole number, got %q", path, n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		if (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil {
			d.problem(n.Line, "%s: want a number, got %q", path, n.Value)
			return
		}
		v.SetFloat(f)
	case reflect.Bool:
		var b bool
		if tag != "!!bool" || n.Decode(&b) != nil {
			d.problem(n.Line, "%s: want true or false, got %q", path, n.Value)
			return
		}
		v.SetBool(b)
	default:
		d.problem(n.Line, "%s: cannot be set from a file", path)
		return
	}
	for _, msg := range checkScalar(sf, v) {
		d.problem(n.Line, "%s: %s", path, msg)
	}
}

func wantOf(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "text"
	case reflect.Int:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	}
	return "a value"
}

// checkScalar applies the rules in sf's tags to v.
func checkScalar(sf reflect.StructField, v reflect.Value) []string {
	var msgs []string
	switch v.Kind() {
	case reflect.String:
		s := v.String()
		chars := utf8.RuneCountInString(s)
		if least, ok := tagInt(sf, "minLength"); ok && chars < least {
			if s == "" {
				msgs = append(msgs, "must not be empty")
			} else {
				msgs = append(msgs, fmt.Sprintf("has %d characters, at least %d needed", chars, least))
			}
		}
		if most, ok := tagInt(sf, "maxLength"); ok && chars > most {
			msgs = append(msgs, fmt.Sprintf("has %d characters, at most %d allowed", chars, most))
		}
		if most, ok := tagInt(sf, "maxBytes"); ok && len(s) > most {
			msgs = append(msgs, fmt.Sprintf("has %d bytes, at most %d allowed", len(s), most))
		}
		if enum := sf.Tag.Get("enum"); enum != "" && !slices.Contains(strings.Split(enum, ","), s) {
			msgs = append(msgs, fmt.Sprintf("%q is not one of %s", s, strings.ReplaceAll(enum, ",", ", ")))
		}
		if pat := sf.Tag.Get("pattern"); pat != "" && s != "" && !pattern(pat).MatchString(s) {
			msgs = append(msgs, fmt.Sprintf("%q is not %s", s, patternWords[pat]))
		}
	case reflect.Int:
		i := v.Int()
		lo, hasLo := tagInt(sf, "minimum")
		hi, hasHi := tagInt(sf, "maximum")
		if (hasLo && i < int64(lo)) || (hasHi && i > int64(hi)) {
			msgs = append(msgs, fmt.Sprintf("must be between %d and %d, got %d", lo, hi, i))
		}
	case reflect.Float64:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			msgs = append(msgs, fmt.Sprintf("must be a finite number, got %g", f))
		} else if lo := sf.Tag.Get("exclusiveMinimum"); lo != "" {
			if least, _ := strconv.ParseFloat(lo, 64); !(f > least) {
				msgs = append(msgs, fmt.Sprintf("must be above %s, got %g", lo, f))
			}
		}
	}
	return msgs
}

// patternWords says in words what each pattern of File's tags accepts.
var patternWords = map[string]string{
	`^[a-z0-9][a-z0-9-]{0,62}$`:        "a slug: 1 to 63 lower-case letters, digits and dashes, starting with a letter or digit",
	`^([0-9]+h)?([0-9]+m)?([0-9]+s)?$`: "a duration in whole seconds such as 30s, 5m or 1h30m",
}

var patterns sync.Map // string -> *regexp.Regexp

func pattern(p string) *regexp.Regexp {
	if re, ok := patterns.Load(p); ok {
		return re.(*regexp.Regexp)
	}
	re := regexp.MustCompile(p)
	patterns.Store(p, re)
	return re
}

func tagInt(sf reflect.StructField, name string) (int, bool) {
	s := sf.Tag.Get(name)
	if s == "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// field is one key of a struct that files may hold.
type field struct {
	name      string
	index     []int
	required  bool // no omitempty
	omitEmpty bool
	sf        reflect.StructField
}

type fieldList []*field

func (fs fieldList) byName(name string) *field {
	for _, f := range fs {
		if f.name == name {
			return f
		}
	}
	return nil
}

func (fs fieldList) names() []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.name
	}
	return out
}

// fieldsOf lists the keys of t in declaration order: the yaml tag's name,
// or the json tag's for types that have only those (panel.Options).
func fieldsOf(t reflect.Type) fieldList {
	var fs fieldList
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag, ok := sf.Tag.Lookup("yaml")
		if !ok {
			tag, ok = sf.Tag.Lookup("json")
		}
		if !ok || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		omit := slices.Contains(strings.Split(opts, ","), "omitempty")
		fs = append(fs, &field{name: name, index: sf.Index, required: !omit, omitEmpty: omit, sf: sf})
	}
	return fs
}
