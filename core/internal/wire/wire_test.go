package wire_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/internal/engine"
	"github.com/pipeweave/pipeweave/core/internal/wire"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// fill sets every exported field of v, recursively, to a value other than its zero: one
// element in slices and maps, a target behind pointers. A pointer back to a type being filled
// (a recursive type: a dry run's sub-pipeline node holds its child's dry run) stays nil.
func fill(v reflect.Value) { fillIn(v, map[reflect.Type]bool{}) }

func fillIn(v reflect.Value, open map[reflect.Type]bool) {
	fill := func(v reflect.Value) { fillIn(v, open) }
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(1, 0)))
			return
		}
		open[v.Type()] = true
		defer delete(open, v.Type())
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.Pointer:
		if open[v.Type().Elem()] {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.Map:
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		v.Set(reflect.MakeMap(v.Type()))
		v.SetMapIndex(k, e)
	case reflect.Interface:
		v.Set(reflect.ValueOf("x"))
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint8:
		v.SetUint(1)
	default:
		panic("fill: no value for " + v.Type().String())
	}
}

// unset lists the exported fields of v, recursively, left at their zero value (but for a nil
// pointer back to a type it is within, which fill leaves nil).
func unset(v reflect.Value, path string) []string { return unsetIn(v, path, map[reflect.Type]bool{}) }

func unsetIn(v reflect.Value, path string, open map[reflect.Type]bool) []string {
	unset := func(v reflect.Value, path string) []string { return unsetIn(v, path, open) }
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			break
		}
		open[v.Type()] = true
		defer delete(open, v.Type())
		var out []string
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				out = append(out, unset(v.Field(i), path+"."+f.Name)...)
			}
		}
		return out
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return unset(v.Elem(), path)
		}
		if v.Kind() == reflect.Pointer && open[v.Type().Elem()] {
			return nil
		}
	case reflect.Slice:
		if v.Len() > 0 {
			return unset(v.Index(0), path+"[0]")
		}
	case reflect.Map:
		if it := v.MapRange(); it.Next() {
			return unset(it.Value(), path+"[]")
		}
	}
	if v.IsZero() {
		return []string{path}
	}
	return nil
}

// converts checks that convert carries every field of a filled T into its result.
func converts[T, W any](convert func(T) W) func(t *testing.T) {
	return func(t *testing.T) {
		t.Parallel()
		var in T
		fill(reflect.ValueOf(&in).Elem())
		require.Empty(t, unset(reflect.ValueOf(convert(in)), reflect.TypeFor[W]().Name()))
	}
}

// TestConvertersCarryEveryField catches a field added to an engine type or its wire shape and
// forgotten in the conversion written field by field (the others are struct conversions,
// checked by the compiler).
func TestConvertersCarryEveryField(t *testing.T) {
	t.Parallel()
	for name, test := range map[string]func(*testing.T){
		"Run":                 converts(wire.Run),
		"RunPage":             converts(wire.RunPage),
		"Services":            converts(wire.Services),
		"Tasks":               converts(wire.Tasks),
		"History":             converts(wire.History),
		"ServiceDetail":       converts(wire.ServiceDetail),
		"QueueStatus":         converts(wire.QueueStatus),
		"ProcessSummary":      converts(wire.ProcessSummary),
		"PurgeSummary":        converts(wire.PurgeSummary),
		"MaintenanceStatus":   converts(wire.MaintenanceStatus),
		"DLQPage":             converts(wire.DLQPage),
		"DLQRetryResult":      converts(wire.DLQRetryResult),
		"RetryAllResult":      converts(wire.RetryAllResult),
		"EnqueueResults":      converts(wire.EnqueueResults),
		"Pipelines":           converts(wire.Pipelines),
		"DryRun":              converts(wire.DryRun),
		"TriggerResult":       converts(wire.TriggerResult),
		"PipelineRunPage":     converts(wire.PipelineRunPage),
		"Object":              converts(wire.Object),
		"TempUpload":          converts(wire.TempUpload),
		"TempUploadInfo":      converts(wire.TempUploadInfo),
		"TempUploadStats":     converts(wire.TempUploadStats),
		"InputSchemaInfo":     converts(wire.InputSchemaInfo),
		"ValidateInputResult": converts(wire.ValidateInputResult),
		"StorageBackends":     converts(wire.StorageBackends),
		"FromEnqueueRequests": converts(wire.FromEnqueueRequests),
		"FromTriggerRequest":  converts(wire.FromTriggerRequest),
	} {
		t.Run(name, test)
	}
}

// TestConvertersKeepNilLists: a nil list is null on the wire and an empty one [], as the
// engine made them.
func TestConvertersKeepNilLists(t *testing.T) {
	t.Parallel()
	require.Nil(t, wire.DLQPage(engine.DLQPage{}).Items)
	require.Equal(t, []protocol.DLQEntry{}, wire.DLQPage(engine.DLQPage{Items: []engine.DLQEntry{}}).Items)
	require.Nil(t, wire.PipelineRun(engine.PipelineRun{}).Tasks)
	require.Equal(t, []protocol.PlanStep{}, wire.DryRun(engine.DryRun{ExecutionPlan: []engine.PlanStep{}}).ExecutionPlan)
}
