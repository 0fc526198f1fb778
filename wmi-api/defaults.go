package wmiapi

import (
	"os"
	"path/filepath"
)

// DefaultListen is where vmms serves and hvctl looks when told nothing.
const DefaultListen = "127.0.0.1:8420"

// TokenFile is the name of the API token file in the state directory.
const TokenFile = "api-token"

// Environment variables hvctl reads.
const (
	EnvServer = "PARTITA_SERVER"
	EnvToken  = "PARTITA_TOKEN"
)

// DefaultStateDir is the state directory vmms uses and hvctl reads the
// token from when told nothing: /var/lib/partita for root, otherwise
// $XDG_STATE_HOME/partita (default ~/.local/state/partita).
func DefaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/partita"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "partita")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "partita")
	}
	return "partita-state"
}
