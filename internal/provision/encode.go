package provision

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/livedash/dashboard/internal/panel"
)

// SchemaFile is the name Export gives the JSON Schema it writes beside the
// dashboards, and that each file's first line points editors to.
const SchemaFile = "dashboard.schema.json"

// schemaComment is the first line of an exported file: the YAML language
// server (VS Code, Neovim, JetBrains) then checks and completes the file.
const schemaComment = "# yaml-language-server: $schema=" + SchemaFile + "\n"

// Marshal writes d in its canonical form: keys in File's order, defaults
// left out, SQL as literal blocks, grids, options and short lists in flow
// style. Equal dashboards give equal bytes, so Marshal is also what Hash
// digests. IDs, positions (other than the order of panels) and the source
// are not part of it.
func Marshal(d *panel.Dashboard) ([]byte, error) {
	root := encodeValue(reflect.ValueOf(fileOf(d)).Elem(), "")
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil, fmt.Errorf("writing dashboard %s: %w", d.Slug, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("writing dashboard %s: %w", d.Slug, err)
	}
	return b.Bytes(), nil
}

// ExportBytes is the file Export writes for d: a line for editors, then
// Marshal's bytes.
func ExportBytes(d *panel.Dashboard) ([]byte, error) {
	b, err := Marshal(d)
	if err != nil {
		return nil, err
	}
	return append([]byte(schemaComment), b...), nil
}

// Hash is the hex SHA-256 of Marshal(d): the source_hash apply records, and
// what diff computes again from the rows to tell whether a dashboard was
// edited in SQL since (drift). Both sides digest the same canonical form,
// so a file's comments, key order or quoting never count as a change.
func Hash(d *panel.Dashboard) (string, error) {
	b, err := Marshal(d)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// encodeValue builds the node for v; style is the style tag of the field v
// belongs to.
func encodeValue(v reflect.Value, style string) *yaml.Node {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
		}
		return encodeValue(v.Elem(), style)
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		if style == "flow" {
			n.Style = yaml.FlowStyle
		}
		for _, f := range fieldsOf(v.Type()) {
			fv := v.FieldByIndex(f.index)
			if f.omitEmpty && isEmpty(fv) {
				continue
			}
			fstyle := f.sf.Tag.Get("style")
			if style == "flow" {
				fstyle = "flow" // inside a flow mapping everything is flow
			}
			n.Content = append(n.Content,
				&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: f.name},
				encodeValue(fv, fstyle))
		}
		return n
	case reflect.Map:
		// Keys in order, so that equal maps give equal bytes (Hash).
		n := &yaml.Node{Kind: yaml.MappingNode}
		if style == "flow" {
			n.Style = yaml.FlowStyle
		}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			n.Content = append(n.Content,
				&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k.String()},
				encodeValue(v.MapIndex(k), style))
		}
		return n
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		if style == "flow" {
			n.Style = yaml.FlowStyle
		}
		for i := range v.Len() {
			n.Content = append(n.Content, encodeValue(v.Index(i), ""))
		}
		return n
	case reflect.String:
		n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v.String()}
		if style == "literal" || (style != "flow" && strings.Contains(v.String(), "\n")) {
			n.Style = yaml.LiteralStyle
		}
		return n
	case reflect.Int:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v.Int(), 10)}
	case reflect.Float64:
		// No tag: 2 reads back as a number either way, and "!!float 2"
		// would be noise.
		return &yaml.Node{Kind: yaml.ScalarNode, Value: strconv.FormatFloat(v.Float(), 'g', -1, 64)}
	case reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v.Bool())}
	}
	panic(fmt.Sprintf("provision: cannot encode %s", v.Type()))
}

// isEmpty is omitempty's test: the zero value, or an empty list.
func isEmpty(v reflect.Value) bool {
	if v.Kind() == reflect.Slice || v.Kind() == reflect.Map {
		return v.Len() == 0
	}
	return v.IsZero()
}
