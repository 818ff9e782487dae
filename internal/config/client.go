package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// DefaultServerURL is where the command line looks for the management API by default: the
// server's default listen address.
const DefaultServerURL = "http://" + DefaultListen

// Client configures the commands that call a running server's management API
// (`rampart device`, `group`, `enroll-token`, `token`).
type Client struct {
	// Server is the server's base URL, such as "https://rampart.example.com".
	Server string
	// Token is the API token ("rmp_...") sent as a bearer token.
	Token string
	// Output is how results are printed: "table" or "json".
	Output string
}

// clientFile is the YAML shape of the CLI config file.
type clientFile struct {
	Server *string `yaml:"server"`
	Token  *string `yaml:"token"`
	Output *string `yaml:"output"`
}

// LoadClient returns the built-in defaults overlaid by the config file and then by
// RAMPART_SERVER, RAMPART_TOKEN and RAMPART_OUTPUT. The caller applies command-line flags on
// top and then calls Validate, so a flag can still correct a bad environment value.
//
// file is the config file to read; "" means $RAMPART_CLI_CONFIG, else
// $XDG_CONFIG_HOME/rampart/cli.yaml or $HOME/.config/rampart/cli.yaml. A named file must
// exist; the default one may be absent.
func LoadClient(getenv func(string) string, file string) (Client, error) {
	c := Client{Server: DefaultServerURL, Output: "table"}
	explicit := true
	if file == "" {
		file = getenv("RAMPART_CLI_CONFIG")
	}
	if file == "" {
		explicit = false
		file = defaultClientFile(getenv)
	}
	if file != "" {
		if err := c.readFile(file, explicit); err != nil {
			return Client{}, err
		}
	}
	for name, dst := range map[string]*string{
		"RAMPART_SERVER": &c.Server, "RAMPART_TOKEN": &c.Token, "RAMPART_OUTPUT": &c.Output,
	} {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	return c, nil
}

func overlayString(dst, src *string) {
	if src != nil {
		*dst = *src
	}
}

func defaultClientFile(getenv func(string) string) string {
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "rampart", "cli.yaml")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "rampart", "cli.yaml")
	}
	return ""
}

func (c *Client) readFile(name string, mustExist bool) error {
	b, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) && !mustExist {
		return nil
	}
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var f clientFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) { // empty file: no settings
		return invalid("config file %s: %v", name, err)
	}
	overlayString(&c.Server, f.Server)
	overlayString(&c.Token, f.Token)
	overlayString(&c.Output, f.Output)
	return nil
}

// Validate checks the server URL and the output format.
func (c Client) Validate() error {
	u, err := url.Parse(c.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid("server %q must be an http:// or https:// URL", c.Server)
	}
	if c.Output != "table" && c.Output != "json" {
		return invalid("output %q is not table or json", c.Output)
	}
	return nil
}
