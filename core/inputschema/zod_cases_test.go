package inputschema_test

// zodCases were written from zod 3's documented behaviour for the schemas upstream's
// input-validator.ts builds (z.object of the fields, .optional().default(), z.coerce.date(),
// z.enum / z.literal / z.union for selects, .strict()), and checked against zod 3.25.
var zodCases = []zodCase{
	{"input absent", `{"fields": [{"name": "a", "type": "string", "label": "A"}]}`, "", []ve{
		{Field: "", Message: "Required", Code: "invalid_type"},
	}},
	{"input null", `{"fields": [{"name": "a", "type": "string", "label": "A"}]}`, `null`, []ve{
		{Field: "", Message: "Expected object, received null", Code: "invalid_type"},
	}},
	{"input array", `{"fields": [{"name": "a", "type": "string", "label": "A"}]}`, `[1]`, []ve{
		{Field: "", Message: "Expected object, received array", Code: "invalid_type"},
	}},
	{"input string", `{"fields": [{"name": "a", "type": "string", "label": "A"}]}`, `"x"`, []ve{
		{Field: "", Message: "Expected object, received string", Code: "invalid_type"},
	}},
	{"empty schema accepts object", `{"fields": []}`, `{"x": 1}`, []ve{}},
	{"string ok", `{"fields": [{"name": "name", "type": "string", "label": "Name", "required": true, "minLength": 3, "maxLength": 5}]}`, `{"name": "abcd"}`, []ve{}},
	{"string required missing", `{"fields": [{"name": "name", "type": "string", "label": "Name", "required": true, "minLength": 3, "maxLength": 5}]}`, `{}`, []ve{
		{Field: "name", Message: "Required", Code: "invalid_type"},
	}},
	{"string null", `{"fields": [{"name": "name", "type": "string", "label": "Name", "required": true, "minLength": 3, "maxLength": 5}]}`, `{"name": null}`, []ve{
		{Field: "name", Message: "Expected string, received null", Code: "invalid_type"},
	}},
	{"string number", `{"fields": [{"name": "name", "type": "string", "label": "Name", "required": true, "minLength": 3, "maxLength": 5}]}`, `{"name": 5}`, []ve{
		{Field: "name", Message: "Expected string, received number", Code: "invalid_type"},
	}},
	{"string too short", `{"fields": [{"name": "name", "type": "string", "label": "Name", "required": true, "minLength": 3, "maxLength": 5}]}`, `{"name": "ab"}`, []ve{
		{Field: "name", Message: "Minimum length is 3", Code: "too_small"},
	}},
	{"string too long", `{"fields": [{"name": "name", "type": "string", "label": "Name", "required": true, "minLength": 3, "maxLength": 5}]}`, `{"name": "abcdef"}`, []ve{
		{Field: "name", Message: "Maximum length is 5", Code: "too_big"},
	}},
	{"string length counts UTF-16 units", `{"fields": [{"name": "name", "type": "string", "label": "Name", "required": true, "minLength": 3, "maxLength": 5}]}`, `{"name": "😀😀😀"}`, []ve{
		{Field: "name", Message: "Maximum length is 5", Code: "too_big"},
	}},
	{"optional string absent", `{"fields": [{"name": "a", "type": "string", "label": "A"}]}`, `{}`, []ve{}},
	{"optional string null is not absent", `{"fields": [{"name": "a", "type": "string", "label": "A"}]}`, `{"a": null}`, []ve{
		{Field: "a", Message: "Expected string, received null", Code: "invalid_type"},
	}},
	{"pattern", `{"fields": [{"name": "code", "type": "string", "label": "Code", "pattern": "^[A-Z]{3}-\\d+$"}]}`, `{"code": "abc-1"}`, []ve{
		{Field: "code", Message: "Invalid format", Code: "invalid_string"},
	}},
	{"pattern ok", `{"fields": [{"name": "code", "type": "string", "label": "Code", "pattern": "^[A-Z]{3}-\\d+$"}]}`, `{"code": "ABC-12"}`, []ve{}},
	{"pattern unanchored", `{"fields": [{"name": "code", "type": "string", "label": "Code", "pattern": "b"}]}`, `{"code": "abc"}`, []ve{}},
	{"all string checks reported", `{"fields": [{"name": "e", "type": "email", "label": "E", "minLength": 10, "pattern": "^z"}]}`, `{"e": "a@b"}`, []ve{
		{Field: "e", Message: "Invalid email address", Code: "invalid_string"},
		{Field: "e", Message: "Minimum length is 10", Code: "too_small"},
		{Field: "e", Message: "Invalid format", Code: "invalid_string"},
	}},
	{"textarea", `{"fields": [{"name": "t", "type": "textarea", "label": "T", "maxLength": 2}]}`, `{"t": "abc"}`, []ve{
		{Field: "t", Message: "Maximum length is 2", Code: "too_big"},
	}},
	{"email 0 a@example.com", `{"fields": [{"name": "e", "type": "email", "label": "E"}]}`, `{"e": "a@example.com"}`, []ve{}},
	{"email 1 first.last+tag@sub.example.org", `{"fields": [{"name": "e", "type": "email", "label": "E"}]}`, `{"e": "first.last+tag@sub.example.org"}`, []ve{}},
	{"email 2 .a@example.com", `{"fields": [{"name": "e", "type": "email", "label": "E"}]}`, `{"e": ".a@example.com"}`, []ve{
		{Field: "e", Message: "Invalid email address", Code: "invalid_string"},
	}},
	{"email 3 a..b@example.com", `{"fields": [{"name": "e", "type": "email", "label": "E"}]}`, `{"e": "a..b@example.com"}`, []ve{
		{Field: "e", Message: "Invalid email address", Code: "invalid_string"},
	}},
	{"email 4 a@example", `{"fields": [{"name": "e", "type": "email", "label": "E"}]}`, `{"e": "a@example"}`, []ve{
		{Field: "e", Message: "Invalid email address", Code: "invalid_string"},
	}},
	{"email 5 a@example.c", `{"fields": [{"name": "e", "type": "email", "label": "E"}]}`, `{"e": "a@example.c"}`, []ve{
		{Field: "e", Message: "Invalid email address", Code: "invalid_string"},
	}},
	{"email 6 a.@example.com", `{"fields": [{"name": "e", "type": "email", "label": "E"}]}`, `{"e": "a.@example.com"}`, []ve{
		{Field: "e", Message: "Invalid email address", Code: "invalid_string"},
	}},
	{"email 7 a@-example.com", `{"fields": [{"name": "e", "type": "email", "label": "E"}]}`, `{"e": "a@-example.com"}`, []ve{
		{Field: "e", Message: "Invalid email address", Code: "invalid_string"},
	}},
	{"email 8 A_B@EXAMPLE.COM", `{"fields": [{"name": "e", "type": "email", "label": "E"}]}`, `{"e": "A_B@EXAMPLE.COM"}`, []ve{}},
	{"email 9 a b@example.com", `{"fields": [{"name": "e", "type": "email", "label": "E"}]}`, `{"e": "a b@example.com"}`, []ve{
		{Field: "e", Message: "Invalid email address", Code: "invalid_string"},
	}},
	{"email 10 o'neil@example.com", `{"fields": [{"name": "e", "type": "email", "label": "E"}]}`, `{"e": "o'neil@example.com"}`, []ve{}},
	{"url 0 https://example.com/x?y#z", `{"fields": [{"name": "u", "type": "url", "label": "U"}]}`, `{"u": "https://example.com/x?y#z"}`, []ve{}},
	{"url 1 http://", `{"fields": [{"name": "u", "type": "url", "label": "U"}]}`, `{"u": "http://"}`, []ve{
		{Field: "u", Message: "Invalid URL", Code: "invalid_string"},
	}},
	{"url 2 mailto:someone@example.com", `{"fields": [{"name": "u", "type": "url", "label": "U"}]}`, `{"u": "mailto:someone@example.com"}`, []ve{}},
	{"url 3 example.com", `{"fields": [{"name": "u", "type": "url", "label": "U"}]}`, `{"u": "example.com"}`, []ve{
		{Field: "u", Message: "Invalid URL", Code: "invalid_string"},
	}},
	{"url 4 http://exa mple.com", `{"fields": [{"name": "u", "type": "url", "label": "U"}]}`, `{"u": "http://exa mple.com"}`, []ve{
		{Field: "u", Message: "Invalid URL", Code: "invalid_string"},
	}},
	{"url 5 http://a:99999", `{"fields": [{"name": "u", "type": "url", "label": "U"}]}`, `{"u": "http://a:99999"}`, []ve{
		{Field: "u", Message: "Invalid URL", Code: "invalid_string"},
	}},
	{"url 6 ftp://files.example.com", `{"fields": [{"name": "u", "type": "url", "label": "U"}]}`, `{"u": "ftp://files.example.com"}`, []ve{}},
	{"url 7 http://[::1]:8080/", `{"fields": [{"name": "u", "type": "url", "label": "U"}]}`, `{"u": "http://[::1]:8080/"}`, []ve{}},
	{"url 8 urn:isbn:123", `{"fields": [{"name": "u", "type": "url", "label": "U"}]}`, `{"u": "urn:isbn:123"}`, []ve{}},
	{"url 9 http:example.com", `{"fields": [{"name": "u", "type": "url", "label": "U"}]}`, `{"u": "http:example.com"}`, []ve{}},
	{"url 10 http://999.1.1.1", `{"fields": [{"name": "u", "type": "url", "label": "U"}]}`, `{"u": "http://999.1.1.1"}`, []ve{
		{Field: "u", Message: "Invalid URL", Code: "invalid_string"},
	}},
	{"url 11 http://1.2.3.4", `{"fields": [{"name": "u", "type": "url", "label": "U"}]}`, `{"u": "http://1.2.3.4"}`, []ve{}},
	{"number ok", `{"fields": [{"name": "n", "type": "number", "label": "N", "min": 1, "max": 10}]}`, `{"n": 5}`, []ve{}},
	{"number too small", `{"fields": [{"name": "n", "type": "number", "label": "N", "min": 1, "max": 10}]}`, `{"n": 0}`, []ve{
		{Field: "n", Message: "Minimum value is 1", Code: "too_small"},
	}},
	{"number too big", `{"fields": [{"name": "n", "type": "number", "label": "N", "min": 1, "max": 10}]}`, `{"n": 10.5}`, []ve{
		{Field: "n", Message: "Maximum value is 10", Code: "too_big"},
	}},
	{"number string", `{"fields": [{"name": "n", "type": "number", "label": "N", "min": 1, "max": 10}]}`, `{"n": "5"}`, []ve{
		{Field: "n", Message: "Expected number, received string", Code: "invalid_type"},
	}},
	{"number fractional bounds message", `{"fields": [{"name": "n", "type": "number", "label": "N", "min": 0.5, "max": 1e+21}]}`, `{"n": 0.1}`, []ve{
		{Field: "n", Message: "Minimum value is 0.5", Code: "too_small"},
	}},
	{"number big bound message", `{"fields": [{"name": "n", "type": "number", "label": "N", "max": 1e+21}]}`, `{"n": 2e+21}`, []ve{
		{Field: "n", Message: "Maximum value is 1e+21", Code: "too_big"},
	}},
	{"integer ok", `{"fields": [{"name": "i", "type": "integer", "label": "I", "min": 0}]}`, `{"i": 3}`, []ve{}},
	{"integer fraction", `{"fields": [{"name": "i", "type": "integer", "label": "I", "min": 0}]}`, `{"i": 2.5}`, []ve{
		{Field: "i", Message: "Must be an integer", Code: "invalid_type"},
	}},
	{"integer fraction and too small", `{"fields": [{"name": "i", "type": "integer", "label": "I", "min": 0}]}`, `{"i": -2.5}`, []ve{
		{Field: "i", Message: "Must be an integer", Code: "invalid_type"},
		{Field: "i", Message: "Minimum value is 0", Code: "too_small"},
	}},
	{"integer 1.0", `{"fields": [{"name": "i", "type": "integer", "label": "I"}]}`, `{"i": 1.0}`, []ve{}},
	{"required number missing", `{"fields": [{"name": "n", "type": "number", "label": "N", "required": true}]}`, `{}`, []ve{
		{Field: "n", Message: "Required", Code: "invalid_type"},
	}},
	{"boolean ok", `{"fields": [{"name": "b", "type": "boolean", "label": "B", "required": true}]}`, `{"b": false}`, []ve{}},
	{"boolean string", `{"fields": [{"name": "b", "type": "boolean", "label": "B"}]}`, `{"b": "true"}`, []ve{
		{Field: "b", Message: "Expected boolean, received string", Code: "invalid_type"},
	}},
	{"boolean missing", `{"fields": [{"name": "b", "type": "boolean", "label": "B", "required": true}]}`, `{}`, []ve{
		{Field: "b", Message: "Required", Code: "invalid_type"},
	}},
	{"date 0 '2024-01-15'", `{"fields": [{"name": "d", "type": "date", "label": "D"}]}`, `{"d": "2024-01-15"}`, []ve{}},
	{"date 1 '2024-01-15T10:30:00Z'", `{"fields": [{"name": "d", "type": "date", "label": "D"}]}`, `{"d": "2024-01-15T10:30:00Z"}`, []ve{}},
	{"date 2 '2024-01-15T10:30:00.123+02:00'", `{"fields": [{"name": "d", "type": "date", "label": "D"}]}`, `{"d": "2024-01-15T10:30:00.123+02:00"}`, []ve{}},
	{"date 3 '2024-01-15T10:30'", `{"fields": [{"name": "d", "type": "date", "label": "D"}]}`, `{"d": "2024-01-15T10:30"}`, []ve{}},
	{"date 4 '2024-13-01'", `{"fields": [{"name": "d", "type": "date", "label": "D"}]}`, `{"d": "2024-13-01"}`, []ve{
		{Field: "d", Message: "Invalid date", Code: "invalid_date"},
	}},
	{"date 5 'not a date'", `{"fields": [{"name": "d", "type": "date", "label": "D"}]}`, `{"d": "not a date"}`, []ve{
		{Field: "d", Message: "Invalid date", Code: "invalid_date"},
	}},
	{"date 6 ''", `{"fields": [{"name": "d", "type": "date", "label": "D"}]}`, `{"d": ""}`, []ve{
		{Field: "d", Message: "Invalid date", Code: "invalid_date"},
	}},
	{"date 7 0", `{"fields": [{"name": "d", "type": "date", "label": "D"}]}`, `{"d": 0}`, []ve{}},
	{"date 8 1700000000000", `{"fields": [{"name": "d", "type": "date", "label": "D"}]}`, `{"d": 1700000000000}`, []ve{}},
	{"date 9 None", `{"fields": [{"name": "d", "type": "date", "label": "D"}]}`, `{"d": null}`, []ve{}},
	{"date 10 True", `{"fields": [{"name": "d", "type": "date", "label": "D"}]}`, `{"d": true}`, []ve{}},
	{"date 11 [2020]", `{"fields": [{"name": "d", "type": "date", "label": "D"}]}`, `{"d": [2020]}`, []ve{}},
	{"date 12 {}", `{"fields": [{"name": "d", "type": "date", "label": "D"}]}`, `{"d": {}}`, []ve{
		{Field: "d", Message: "Invalid date", Code: "invalid_date"},
	}},
	{"required date missing", `{"fields": [{"name": "d", "type": "datetime", "label": "D", "required": true}]}`, `{}`, []ve{
		{Field: "d", Message: "Invalid date", Code: "invalid_date"},
	}},
	{"optional date missing", `{"fields": [{"name": "d", "type": "datetime", "label": "D"}]}`, `{}`, []ve{}},
	{"select ok", `{"fields": [{"name": "s", "type": "select", "label": "S", "required": true, "options": [{"label": "A", "value": "a"}, {"label": "B", "value": "b"}]}]}`, `{"s": "a"}`, []ve{}},
	{"select other", `{"fields": [{"name": "s", "type": "select", "label": "S", "required": true, "options": [{"label": "A", "value": "a"}, {"label": "B", "value": "b"}]}]}`, `{"s": "c"}`, []ve{
		{Field: "s", Message: "Invalid enum value. Expected 'a' | 'b', received 'c'", Code: "invalid_enum_value"},
	}},
	{"select number", `{"fields": [{"name": "s", "type": "select", "label": "S", "required": true, "options": [{"label": "A", "value": "a"}, {"label": "B", "value": "b"}]}]}`, `{"s": 1}`, []ve{
		{Field: "s", Message: "Expected 'a' | 'b', received number", Code: "invalid_type"},
	}},
	{"select missing", `{"fields": [{"name": "s", "type": "select", "label": "S", "required": true, "options": [{"label": "A", "value": "a"}, {"label": "B", "value": "b"}]}]}`, `{}`, []ve{
		{Field: "s", Message: "Required", Code: "invalid_type"},
	}},
	{"mixed select ok number", `{"fields": [{"name": "s", "type": "select", "label": "S", "options": [{"label": "One", "value": 1}, {"label": "Two", "value": "two"}, {"label": "T", "value": true}]}]}`, `{"s": 1}`, []ve{}},
	{"mixed select ok bool", `{"fields": [{"name": "s", "type": "select", "label": "S", "options": [{"label": "One", "value": 1}, {"label": "Two", "value": "two"}, {"label": "T", "value": true}]}]}`, `{"s": true}`, []ve{}},
	{"mixed select bad", `{"fields": [{"name": "s", "type": "select", "label": "S", "options": [{"label": "One", "value": 1}, {"label": "Two", "value": "two"}, {"label": "T", "value": true}]}]}`, `{"s": "one"}`, []ve{
		{Field: "s", Message: "Invalid input", Code: "invalid_union"},
	}},
	{"single literal ok", `{"fields": [{"name": "s", "type": "select", "label": "S", "options": [{"label": "Five", "value": 5}]}]}`, `{"s": 5}`, []ve{}},
	{"single literal bad", `{"fields": [{"name": "s", "type": "select", "label": "S", "options": [{"label": "Five", "value": 5}]}]}`, `{"s": "5"}`, []ve{
		{Field: "s", Message: "Invalid literal value, expected 5", Code: "invalid_literal"},
	}},
	{"select without options takes anything", `{"fields": [{"name": "s", "type": "select", "label": "S", "required": true}]}`, `{"s": {"x": 1}}`, []ve{}},
	{"select without options required absent", `{"fields": [{"name": "s", "type": "select", "label": "S", "required": true}]}`, `{}`, []ve{}},
	{"multiselect ok", `{"fields": [{"name": "m", "type": "multiselect", "label": "M", "options": [{"label": "X", "value": "x"}, {"label": "Y", "value": "y"}]}]}`, `{"m": ["x", "y", "x"]}`, []ve{}},
	{"multiselect bad items", `{"fields": [{"name": "m", "type": "multiselect", "label": "M", "options": [{"label": "X", "value": "x"}, {"label": "Y", "value": "y"}]}]}`, `{"m": ["x", "z", 3]}`, []ve{
		{Field: "m.1", Message: "Invalid enum value. Expected 'x' | 'y', received 'z'", Code: "invalid_enum_value"},
		{Field: "m.2", Message: "Expected 'x' | 'y', received number", Code: "invalid_type"},
	}},
	{"multiselect not array", `{"fields": [{"name": "m", "type": "multiselect", "label": "M", "options": [{"label": "X", "value": "x"}, {"label": "Y", "value": "y"}]}]}`, `{"m": "x"}`, []ve{
		{Field: "m", Message: "Expected array, received string", Code: "invalid_type"},
	}},
	{"multiselect mixed", `{"fields": [{"name": "m", "type": "multiselect", "label": "M", "options": [{"label": "1", "value": 1}, {"label": "2", "value": 2}]}]}`, `{"m": [1, 3]}`, []ve{
		{Field: "m.1", Message: "Invalid input", Code: "invalid_union"},
	}},
	{"multiselect no options", `{"fields": [{"name": "m", "type": "multiselect", "label": "M"}]}`, `{"m": [1, "a", null]}`, []ve{}},
	{"json anything", `{"fields": [{"name": "j", "type": "json", "label": "J", "required": true}]}`, `{"j": [1, {"a": null}]}`, []ve{}},
	{"json required absent", `{"fields": [{"name": "j", "type": "json", "label": "J", "required": true}]}`, `{}`, []ve{}},
	{"file ok", `{"fields": [{"name": "f", "type": "file", "label": "F", "required": true, "accept": ".pdf", "maxSize": 100}]}`, `{"f": "tmp_123"}`, []ve{}},
	{"file not string", `{"fields": [{"name": "f", "type": "file", "label": "F"}]}`, `{"f": {"id": "tmp"}}`, []ve{
		{Field: "f", Message: "Expected string, received object", Code: "invalid_type"},
	}},
	{"array ok", `{"fields": [{"name": "tags", "type": "array", "label": "Tags", "items": {"name": "tag", "type": "string", "label": "Tag", "minLength": 2}}]}`, `{"tags": ["ab", "cd"]}`, []ve{}},
	{"array bad items", `{"fields": [{"name": "tags", "type": "array", "label": "Tags", "items": {"name": "tag", "type": "string", "label": "Tag", "minLength": 2}}]}`, `{"tags": ["ab", "c", 5]}`, []ve{
		{Field: "tags.1", Message: "Minimum length is 2", Code: "too_small"},
		{Field: "tags.2", Message: "Expected string, received number", Code: "invalid_type"},
	}},
	{"array not array", `{"fields": [{"name": "tags", "type": "array", "label": "Tags", "items": {"name": "tag", "type": "string", "label": "Tag", "minLength": 2}}]}`, `{"tags": "ab"}`, []ve{
		{Field: "tags", Message: "Expected array, received string", Code: "invalid_type"},
	}},
	{"array without items", `{"fields": [{"name": "a", "type": "array", "label": "A"}]}`, `{"a": [1, "x"]}`, []ve{}},
	{"array null items", `{"fields": [{"name": "tags", "type": "array", "label": "Tags", "items": {"name": "tag", "type": "string", "label": "Tag", "minLength": 2}}]}`, `{"tags": [null]}`, []ve{
		{Field: "tags.0", Message: "Expected string, received null", Code: "invalid_type"},
	}},
	{"array of objects", `{"fields": [{"name": "rows", "type": "array", "label": "Rows", "items": {"name": "row", "type": "object", "label": "Row", "properties": [{"name": "id", "type": "integer", "label": "Id", "required": true}, {"name": "email", "type": "email", "label": "Email"}]}}]}`, `{"rows": [{"id": 1}, {"id": "x", "email": "bad"}, {}]}`, []ve{
		{Field: "rows.1.id", Message: "Expected number, received string", Code: "invalid_type"},
		{Field: "rows.1.email", Message: "Invalid email address", Code: "invalid_string"},
		{Field: "rows.2.id", Message: "Required", Code: "invalid_type"},
	}},
	{"object ok", `{"fields": [{"name": "addr", "type": "object", "label": "Addr", "required": true, "properties": [{"name": "city", "type": "string", "label": "City", "required": true}, {"name": "zip", "type": "string", "label": "Zip", "pattern": "^\\d{5}$"}, {"name": "geo", "type": "object", "label": "Geo", "properties": [{"name": "lat", "type": "number", "label": "Lat", "min": -90, "max": 90}]}]}]}`, `{"addr": {"city": "Berlin", "zip": "10115", "geo": {"lat": 52.5}, "extra": 1}}`, []ve{}},
	{"object nested errors", `{"fields": [{"name": "addr", "type": "object", "label": "Addr", "required": true, "properties": [{"name": "city", "type": "string", "label": "City", "required": true}, {"name": "zip", "type": "string", "label": "Zip", "pattern": "^\\d{5}$"}, {"name": "geo", "type": "object", "label": "Geo", "properties": [{"name": "lat", "type": "number", "label": "Lat", "min": -90, "max": 90}]}]}]}`, `{"addr": {"zip": "1", "geo": {"lat": 100}}}`, []ve{
		{Field: "addr.city", Message: "Required", Code: "invalid_type"},
		{Field: "addr.zip", Message: "Invalid format", Code: "invalid_string"},
		{Field: "addr.geo.lat", Message: "Maximum value is 90", Code: "too_big"},
	}},
	{"object not object", `{"fields": [{"name": "addr", "type": "object", "label": "Addr", "required": true, "properties": [{"name": "city", "type": "string", "label": "City", "required": true}, {"name": "zip", "type": "string", "label": "Zip", "pattern": "^\\d{5}$"}, {"name": "geo", "type": "object", "label": "Geo", "properties": [{"name": "lat", "type": "number", "label": "Lat", "min": -90, "max": 90}]}]}]}`, `{"addr": [1]}`, []ve{
		{Field: "addr", Message: "Expected object, received array", Code: "invalid_type"},
	}},
	{"object missing", `{"fields": [{"name": "addr", "type": "object", "label": "Addr", "required": true, "properties": [{"name": "city", "type": "string", "label": "City", "required": true}, {"name": "zip", "type": "string", "label": "Zip", "pattern": "^\\d{5}$"}, {"name": "geo", "type": "object", "label": "Geo", "properties": [{"name": "lat", "type": "number", "label": "Lat", "min": -90, "max": 90}]}]}]}`, `{}`, []ve{
		{Field: "addr", Message: "Required", Code: "invalid_type"},
	}},
	{"object without properties", `{"fields": [{"name": "o", "type": "object", "label": "O"}]}`, `{"o": {"a": 1}}`, []ve{}},
	{"object without properties array", `{"fields": [{"name": "o", "type": "object", "label": "O"}]}`, `{"o": [1]}`, []ve{
		{Field: "o", Message: "Expected object, received array", Code: "invalid_type"},
	}},
	{"object without properties null", `{"fields": [{"name": "o", "type": "object", "label": "O"}]}`, `{"o": null}`, []ve{
		{Field: "o", Message: "Expected object, received null", Code: "invalid_type"},
	}},
	{"strict unknown keys", `{"fields": [{"name": "a", "type": "string", "label": "A"}, {"name": "b", "type": "number", "label": "B"}], "strict": true}`, `{"zeta": 1, "a": "x", "alpha": 2}`, []ve{
		{Field: "", Message: "Unrecognized key(s) in object: 'zeta', 'alpha'", Code: "unrecognized_keys"},
	}},
	{"strict with errors and unknown keys", `{"fields": [{"name": "a", "type": "string", "label": "A"}, {"name": "b", "type": "number", "label": "B"}], "strict": true}`, `{"a": 1, "c": true}`, []ve{
		{Field: "a", Message: "Expected string, received number", Code: "invalid_type"},
		{Field: "", Message: "Unrecognized key(s) in object: 'c'", Code: "unrecognized_keys"},
	}},
	{"strict ok", `{"fields": [{"name": "a", "type": "string", "label": "A"}, {"name": "b", "type": "number", "label": "B"}], "strict": true}`, `{"a": "x"}`, []ve{}},
	{"not strict strips", `{"fields": [{"name": "a", "type": "string", "label": "A"}, {"name": "b", "type": "number", "label": "B"}], "strict": false}`, `{"c": 1}`, []ve{}},
	{"strict nested objects are not strict", `{"fields": [{"name": "o", "type": "object", "label": "O", "properties": [{"name": "x", "type": "string", "label": "X"}]}], "strict": true}`, `{"o": {"y": 1}}`, []ve{}},
	{"strict integer-like keys first", `{"fields": [{"name": "a", "type": "string", "label": "A"}, {"name": "b", "type": "number", "label": "B"}], "strict": true}`, `{"z": 1, "10": 1, "2": 1}`, []ve{
		{Field: "", Message: "Unrecognized key(s) in object: '2', '10', 'z'", Code: "unrecognized_keys"},
	}},
	{"default fills absent", `{"fields": [{"name": "n", "type": "number", "label": "N", "default": 5}]}`, `{}`, []ve{}},
	{"default invalid is validated", `{"fields": [{"name": "s", "type": "string", "label": "S", "minLength": 3, "default": "ab"}]}`, `{}`, []ve{
		{Field: "s", Message: "Minimum length is 3", Code: "too_small"},
	}},
	{"default not used when present", `{"fields": [{"name": "s", "type": "string", "label": "S", "minLength": 3, "default": "abc"}]}`, `{"s": "x"}`, []ve{
		{Field: "s", Message: "Minimum length is 3", Code: "too_small"},
	}},
	{"default null validated", `{"fields": [{"name": "s", "type": "string", "label": "S", "default": null}]}`, `{}`, []ve{
		{Field: "s", Message: "Expected string, received null", Code: "invalid_type"},
	}},
	{"default ignored when required", `{"fields": [{"name": "s", "type": "string", "label": "S", "required": true, "default": "abc"}]}`, `{}`, []ve{
		{Field: "s", Message: "Required", Code: "invalid_type"},
	}},
	{"default on select", `{"fields": [{"name": "s", "type": "select", "label": "S", "options": [{"label": "A", "value": "a"}], "default": "b"}]}`, `{}`, []ve{
		{Field: "s", Message: "Invalid enum value. Expected 'a', received 'b'", Code: "invalid_enum_value"},
	}},
	{"error order follows fields", `{"fields": [{"name": "b", "type": "string", "label": "B", "required": true}, {"name": "a", "type": "string", "label": "A", "required": true}, {"name": "1", "type": "number", "label": "1", "required": true}]}`, `{}`, []ve{
		{Field: "1", Message: "Required", Code: "invalid_type"},
		{Field: "b", Message: "Required", Code: "invalid_type"},
		{Field: "a", Message: "Required", Code: "invalid_type"},
	}},
}
