package provision

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// jsonSchema is the part of JSON Schema (draft 07, which the YAML language
// server reads) that File needs. Field order is output order.
type jsonSchema struct {
	Schema               string                 `json:"$schema,omitempty"`
	ID                   string                 `json:"$id,omitempty"`
	Ref                  string                 `json:"$ref,omitempty"`
	Title                string                 `json:"title,omitempty"`
	Description          string                 `json:"description,omitempty"`
	Type                 string                 `json:"type,omitempty"`
	Enum                 []string               `json:"enum,omitempty"`
	Pattern              string                 `json:"pattern,omitempty"`
	MinLength            *int                   `json:"minLength,omitempty"`
	MaxLength            *int                   `json:"maxLength,omitempty"`
	Minimum              *int                   `json:"minimum,omitempty"`
	Maximum              *int                   `json:"maximum,omitempty"`
	ExclusiveMinimum     *float64               `json:"exclusiveMinimum,omitempty"`
	MaxItems             *int                   `json:"maxItems,omitempty"`
	Default              any                    `json:"default,omitempty"`
	AllOf                []*jsonSchema          `json:"allOf,omitempty"`
	Items                *jsonSchema            `json:"items,omitempty"`
	Properties           *properties            `json:"properties,omitempty"`
	Required             []string               `json:"required,omitempty"`
	AdditionalProperties any                    `json:"additionalProperties,omitempty"` // false, or the schema of every value
	Definitions          map[string]*jsonSchema `json:"definitions,omitempty"`
}

// properties keeps the keys in File's order, which editors show.
type properties struct {
	names   []string
	schemas map[string]*jsonSchema
}

func (p *properties) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, name := range p.names {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := marshal(name)
		v, err := marshal(p.schemas[name])
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Schema returns the JSON Schema of a dashboard file, made from File and
// the types it holds (panel.Options included) by reflection: keys from
// their yaml (or json) tags, descriptions and rules from the tags that the
// checks read too, so that an editor and `dashboard lint` agree. It is
// what `dashboard schema` prints and docs/dashboard.schema.json holds.
func Schema() ([]byte, error) {
	return schemaOf(reflect.TypeOf(File{}), SchemaFile, "Dashboard",
		"One dashboard of github.com/livedash/dashboard, as `dashboard export` writes it and `dashboard apply` reads it (docs/files.md).")
}

// schemaOf is the JSON Schema of the file type t, published as
// docs/<file>.
func schemaOf(t reflect.Type, file, title, description string) ([]byte, error) {
	defs := make(map[string]*jsonSchema)
	root := structSchema(t, defs)
	root.Schema = "http://json-schema.org/draft-07/schema#"
	root.ID = "https://github.com/livedash/dashboard/docs/" + file
	root.Title = title
	root.Description = description
	if len(defs) > 0 {
		root.Definitions = defs
	}
	b, err := marshal(root)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// marshal is json.Marshal without HTML escaping: the schema is read by
// people and editors, and "<slug>" reads better than "\u003cslug\u003e".
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// structSchema is the schema of a struct type; the structs it holds go to
// defs and are referred to by name.
func structSchema(t reflect.Type, defs map[string]*jsonSchema) *jsonSchema {
	s := &jsonSchema{Type: "object", AdditionalProperties: false, Properties: &properties{schemas: map[string]*jsonSchema{}}}
	for _, f := range fieldsOf(t) {
		fs := typeSchema(f.sf.Type, defs)
		if fs.Ref != "" {
			// Draft 07 ignores the siblings of $ref: the field's own
			// description goes beside an allOf that holds it.
			fs = &jsonSchema{Description: f.sf.Tag.Get("desc"), AllOf: []*jsonSchema{fs}}
		} else {
			fieldRules(fs, f.sf)
		}
		s.Properties.names = append(s.Properties.names, f.name)
		s.Properties.schemas[f.name] = fs
		if f.required {
			s.Required = append(s.Required, f.name)
		}
	}
	return s
}

// typeSchema is the schema of a value of type t.
func typeSchema(t reflect.Type, defs map[string]*jsonSchema) *jsonSchema {
	switch t.Kind() {
	case reflect.Pointer:
		return typeSchema(t.Elem(), defs)
	case reflect.Struct:
		name := t.Name()
		if _, ok := defs[name]; !ok {
			defs[name] = nil // placeholder against recursion
			defs[name] = structSchema(t, defs)
		}
		return &jsonSchema{Ref: "#/definitions/" + name}
	case reflect.Slice:
		return &jsonSchema{Type: "array", Items: typeSchema(t.Elem(), defs)}
	case reflect.Map:
		return &jsonSchema{Type: "object", AdditionalProperties: typeSchema(t.Elem(), defs)}
	case reflect.String:
		return &jsonSchema{Type: "string"}
	case reflect.Int:
		return &jsonSchema{Type: "integer"}
	case reflect.Float64:
		return &jsonSchema{Type: "number"}
	case reflect.Bool:
		return &jsonSchema{Type: "boolean"}
	}
	panic("provision: no schema for " + t.String())
}

// fieldRules copies the rules of sf's tags onto s.
func fieldRules(s *jsonSchema, sf reflect.StructField) {
	s.Description = sf.Tag.Get("desc")
	intp := func(name string) *int {
		if n, ok := tagInt(sf, name); ok {
			return &n
		}
		return nil
	}
	if enum := sf.Tag.Get("enum"); enum != "" {
		s.Enum = strings.Split(enum, ",")
	}
	s.Pattern = sf.Tag.Get("pattern")
	s.MinLength, s.MaxLength = intp("minLength"), intp("maxLength")
	s.Minimum, s.Maximum = intp("minimum"), intp("maximum")
	s.MaxItems = intp("maxItems")
	if lo := sf.Tag.Get("exclusiveMinimum"); lo != "" {
		f, _ := strconv.ParseFloat(lo, 64)
		s.ExclusiveMinimum = &f
	}
	if def, ok := sf.Tag.Lookup("default"); ok {
		switch s.Type {
		case "integer":
			n, _ := strconv.Atoi(def)
			s.Default = n
		default:
			s.Default = def
		}
	}
}
