package engine

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// selectItems resolves the pointer (escapes, array indexes, the whole document) and names the
// JSON type it found when that is not an array.
func TestSelectItems(t *testing.T) {
	t.Parallel()
	doc := []byte(`{"a/b":{"x~y":[1,2]},"list":[[10,11],[12]],"n":null,"s":"str","num":3,"t":true}`)
	for name, c := range map[string]struct {
		doc, items string
		max        int
		want       []string
		code, msg  string
	}{
		"escapes":            {items: "/a~1b/x~0y", want: []string{"1", "2"}},
		"array index":        {items: "/list/1", want: []string{"12"}},
		"whole output":       {doc: `[{"p":1},{"p":2}]`, items: "", want: []string{`{"p":1}`, `{"p":2}`}},
		"missing key":        {items: "/nope", code: MapItemsInvalid, msg: `items "/nope" does not resolve in the output of split`},
		"index out of range": {items: "/list/2", code: MapItemsInvalid, msg: "does not resolve"},
		"leading zero":       {items: "/list/01", code: MapItemsInvalid, msg: "does not resolve"},
		"null":               {items: "/n", code: MapItemsInvalid, msg: "selects a JSON null"},
		"string":             {items: "/s", code: MapItemsInvalid, msg: "selects a JSON string"},
		"number":             {items: "/num", code: MapItemsInvalid, msg: "selects a JSON number"},
		"boolean":            {items: "/t", code: MapItemsInvalid, msg: "selects a JSON boolean"},
		"object":             {items: "/a~1b", code: MapItemsInvalid, msg: "selects a JSON object"},
		"through a scalar":   {items: "/s/0", code: MapItemsInvalid, msg: "does not resolve"},
		"no output":          {doc: "-", items: "/x", code: MapItemsInvalid, msg: "split has no output"},
		"too many":           {items: "/list", max: 1, code: MapTooLarge, msg: `items "/list" has 2 elements; maxItems is 1`},
	} {
		d := doc
		switch c.doc {
		case "":
		case "-":
			d = nil
		default:
			d = []byte(c.doc)
		}
		max := c.max
		if max == 0 {
			max = MaxMapItems
		}
		items, code, msg := selectItems(d, &protocol.MapConfig{Over: "split", Items: c.items, MaxItems: max})
		require.Equal(t, c.code, code, name)
		require.Contains(t, msg, c.msg, name)
		if c.code == "" {
			got := make([]string, len(items))
			for i, it := range items {
				got[i] = string(it)
			}
			require.Equal(t, c.want, got, name)
		}
	}
	require.Equal(t, "array", jsonKind(json.RawMessage(" [1]")))
}
