package engine

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/internal/ids"
	"github.com/pipeweave/pipeweave/core/storage"
)

func TestUploadName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 150) + ".pdf" // 304 bytes
	for in, want := range map[string]string{
		"report.pdf":         "report.pdf",
		"report (final).pdf": "report (final).pdf",
		"a/b\\c.txt":         "a_b_c.txt",
		"../../etc/passwd":   ".._.._etc_passwd",
		"..":                 "upload",
		".":                  "upload",
		"":                   "upload",
		"  \t\n ":            "upload",
		"bell\x07\x00.txt":   "bell.txt",
		"bad\xffutf8.txt":    "badutf8.txt",
		"\u0085next.txt":     "next.txt",
	} {
		got := UploadName(in)
		require.Equal(t, want, got, "%q", in)
		require.NoError(t, storage.ValidateKey(TempUploadPrefix+"tmp_x/"+got), "%q", in)
	}
	got := UploadName(long)
	require.LessOrEqual(t, len(got), maxUploadName)
	require.True(t, strings.HasSuffix(got, ".pdf"), got)
	require.True(t, strings.HasPrefix(got, "éé"), got)
	require.NoError(t, storage.ValidateKey(TempUploadPrefix+"tmp_x/"+got))
}

func TestTempUploadRefs(t *testing.T) {
	t.Parallel()
	a, b := ids.New(ids.TempUpload), ids.New(ids.TempUpload)
	require.Regexp(t, uploadIDForm, a)
	input := json.RawMessage(`{"doc": {"files": ["` + a + `", 3, null, {"deep": ["` + b + `"]}]}, "again": "` + a + `",
		"` + b + `x": "key, not value", "tmp_dir": "tmp_dir", "short": "tmp_abc", "upper": "` + strings.ToUpper(a) + `"}`)
	got := TempUploadRefs(input)
	require.ElementsMatch(t, []string{a, b}, got, "string values of the id form, anywhere, once each")
	require.Nil(t, TempUploadRefs(json.RawMessage(`{"image": "cat.png", "n": [1, 2]}`)))
	require.Nil(t, TempUploadRefs(nil))
	require.Nil(t, TempUploadRefs(json.RawMessage(`"plain"`)))
	require.Equal(t, []string{a}, TempUploadRefs(json.RawMessage(`"`+a+`"`)), "the input may be the id itself")
	escaped := `"\u0074mp_` + a[4:] + `"`
	require.Equal(t, []string{a}, TempUploadRefs(json.RawMessage(escaped)), "escapes are decoded")
}
