package wmiapi

import (
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
)

// schemaTypes are the named JSON types the OpenAPI document describes.
var schemaTypes = []any{
	ComputerSystem{}, VirtualSystemSettingData{}, ResourceSettingData{}, SystemSettings{}, ConcreteJob{},
	StateChangeRequest{}, StateChangeResult{}, DefineSystemRequest{}, DefineSystemResult{}, DestroySystemRequest{},
	ModifySystemSettingsRequest{}, AddResourceSettingsRequest{}, ModifyResourceSettingsRequest{},
	RemoveResourceSettingsRequest{}, ResourceSettingsResult{}, MethodResult{}, Error{}, ErrorDetail{},
	HeartbeatComponent{}, ShutdownRequest{}, KvpExchangeDataItem{}, KvpExchangeComponent{}, KvpItemsRequest{},
}

var (
	openapiOnce sync.Once
	openapiDoc  map[string]any
)

// OpenAPI returns the API's OpenAPI 3.0 document, built from the route
// table and the Go types, so that it describes exactly what is served.
func OpenAPI() map[string]any {
	openapiOnce.Do(func() { openapiDoc = buildOpenAPI() })
	return openapiDoc
}

func buildOpenAPI() map[string]any {
	schemas := map[string]any{}
	for _, v := range schemaTypes {
		t := reflect.TypeOf(v)
		schemas[t.Name()] = schemaOf(t)
	}
	schemas["Health"] = map[string]any{"type": "object", "properties": map[string]any{"status": map[string]any{"type": "string"}}}
	paths := map[string]any{}
	for _, rt := range routes {
		item, _ := paths[rt.path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.path] = item
		}
		op := map[string]any{
			"summary":     rt.summary,
			"operationId": strings.ToLower(rt.method) + strings.NewReplacer("/", "_", "{", "", "}", "", ".", "_").Replace(rt.path),
			"responses":   responses(rt),
		}
		if rt.open {
			op["security"] = []any{}
		}
		var params []any
		for _, name := range []string{"system", "job"} {
			if strings.Contains(rt.path, "{"+name+"}") {
				params = append(params, map[string]any{"name": name, "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
			}
		}
		if strings.HasSuffix(rt.path, "/console") && rt.method == "GET" {
			params = append(params,
				map[string]any{"name": "cursor", "in": "query", "schema": map[string]any{"type": "integer", "minimum": 0}},
				map[string]any{"name": "follow", "in": "query", "schema": map[string]any{"type": "boolean"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		switch rt.in {
		case "":
		case "bytes":
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/octet-stream": map[string]any{"schema": map[string]any{"type": "string", "format": "binary", "maxLength": MaxConsoleIn}}}}
		default:
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": ref(rt.in)}}}
		}
		item[strings.ToLower(rt.method)] = op
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{"title": "Partita management API (WMI v2 style)", "version": "2",
			"description": "Partitions as Msvm_ComputerSystem, definitions through Msvm_VirtualSystemManagementService, state changes as Msvm_ConcreteJob. Strict JSON: unknown fields are refused (400); values out of their limits 422; unknown partitions 404; conflicts 409; a missing or wrong bearer token 401. Every error is an Error body with a stable code."},
		"paths":    paths,
		"security": []any{map[string]any{"bearer": []any{}}},
		"components": map[string]any{
			"schemas":         schemas,
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
		},
	}
}

func ref(name string) map[string]any {
	if n, ok := strings.CutPrefix(name, "[]"); ok {
		return map[string]any{"type": "array", "items": ref(n)}
	}
	switch name {
	case "object":
		return map[string]any{"type": "object"}
	case "text":
		return map[string]any{"type": "string"}
	}
	return map[string]any{"$ref": "#/components/schemas/" + name}
}

func responses(rt route) map[string]any {
	errBody := map[string]any{"description": "error", "content": map[string]any{"application/json": map[string]any{"schema": ref("Error")}}}
	ok := map[string]any{"description": "success"}
	switch rt.out {
	case "":
	case "bytes":
		ok["content"] = map[string]any{"application/octet-stream": map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}
	case "text":
		ok["content"] = map[string]any{"text/plain": map[string]any{"schema": ref("text")}}
	default:
		ok["content"] = map[string]any{"application/json": map[string]any{"schema": ref(rt.out)}}
	}
	r := map[string]any{itoa(rt.status): ok, "default": errBody}
	return r
}

func itoa(n int) string { return strconv.Itoa(n) }

var timeType = reflect.TypeOf(time.Time{})

// schemaOf describes a Go type as an OpenAPI schema.
func schemaOf(t reflect.Type) map[string]any {
	if t == timeType {
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32:
		return map[string]any{"type": "integer"}
	case reflect.Uint16:
		return map[string]any{"type": "integer", "minimum": 0, "maximum": 65535}
	case reflect.Uint32, reflect.Uint64, reflect.Uint:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem())}
	case reflect.Struct:
		props := map[string]any{}
		var required []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if f.Type.Kind() == reflect.Struct && f.Type != timeType && f.Type.Name() != "" {
				props[name] = ref(f.Type.Name())
			} else if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
				props[name] = map[string]any{"type": "array", "items": ref(f.Type.Elem().Name())}
			} else {
				props[name] = schemaOf(f.Type)
			}
			if !strings.Contains(opts, "omitempty") {
				required = append(required, name)
			}
		}
		s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	}
	return map[string]any{}
}
