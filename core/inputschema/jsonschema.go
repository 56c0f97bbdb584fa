package inputschema

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// schemaURL is where a task's JSON Schema is filed in its compiler; nothing else is loaded.
const schemaURL = "urn:pipeweave:input-json-schema"

// noLoader refuses every URL the compiler would fetch: a $ref to another document, or a
// $schema that is not one of the drafts built in.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s is not loaded: only references inside the schema ($ref \"#/...\") and the standard drafts are allowed", url)
}

var printer = message.NewPrinter(language.English)

// compileJSONSchema compiles a standard JSON Schema (draft 4 to 2020-12, 2020-12 when it names
// none), with format assertions on (as draft 7 has them) and no remote references.
func compileJSONSchema(raw []byte) (*jsonschema.Schema, error) {
	if len(raw) > MaxSchemaBytes {
		return nil, fmt.Errorf("inputJsonSchema is larger than %d bytes", MaxSchemaBytes)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("inputJsonSchema is not JSON: %w", err)
	}
	switch doc.(type) {
	case map[string]any, bool:
	default:
		return nil, errors.New("inputJsonSchema must be a JSON Schema: an object or a boolean")
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	c.AssertFormat()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("inputJsonSchema: %w", err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("inputJsonSchema: %s", strings.ReplaceAll(err.Error(), schemaURL, "inputJsonSchema"))
	}
	return sch, nil
}

// jsonSchemaErrors flattens a validation failure to its leaves.
func jsonSchemaErrors(err error) []ValidationError {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []ValidationError{{Field: "", Message: err.Error(), Code: "json_schema"}}
	}
	var out []ValidationError
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		code := "json_schema"
		if kp := e.ErrorKind.KeywordPath(); len(kp) > 0 {
			code += "_" + kp[len(kp)-1]
		}
		out = append(out, ValidationError{
			Field:   strings.Join(e.InstanceLocation, "."),
			Message: e.ErrorKind.LocalizedString(printer),
			Code:    code,
		})
	}
	walk(ve)
	return out
}
