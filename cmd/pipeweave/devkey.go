package main

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// devAPIKey is the API key `pipeweave dev` generated ($PIPEWEAVE_DEV_DIR/api-key, else
// .pipeweave/api-key of the working directory), for an operator command given neither --token
// nor PIPEWEAVE_API_TOKEN; "" when there is none or when base is not on this machine (the dev
// key is never sent elsewhere).
func devAPIKey(base string, getenv func(string) string) string {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return ""
	}
	raw, err := os.ReadFile(filepath.Join(devDir(getenv), devKeyFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(raw))
}
