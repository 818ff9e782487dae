package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/client"
)

func newDeviceCmd(e *env) *cobra.Command {
	cmd := newCommandGroup("device", "List, inspect, admit and retire devices")
	f := addAPIFlags(cmd, e)
	cmd.AddCommand(
		newDeviceLsCmd(f),
		newDeviceShowCmd(f),
		newDevicePackagesCmd(f),
		newDeviceEventsCmd(f),
		newDeviceStatusCmd(f, "accept", "Admit devices", "accepted", (*client.Client).Accept),
		newDeviceStatusCmd(f, "reject", "Refuse devices", "rejected", (*client.Client).Reject),
		newDeviceStatusCmd(f, "decommission", "Retire devices for good", "decommissioned", (*client.Client).Decommission),
		newDeviceRevokeKeyCmd(f),
		newDeviceTagCmd(f),
		newDevicePreauthorizeCmd(f),
	)
	return cmd
}

func newDeviceLsCmd(f *apiFlags) *cobra.Command {
	var q client.DeviceQuery
	var all bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List devices",
		Long: `List devices, one page at a time unless --all is given.

--filter takes a device filter expression, for example:
  rampart device ls --filter 'type == "gw" && "prod" in tags'`,
		Args: cobra.NoArgs,
		RunE: f.run(func(s *session, _ []string) error {
			return s.listDevices(all, q, s.api.Devices, s.api.AllDevices)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&q.Status, "status", "", "only devices in this status: preauthorized, pending, accepted, rejected, decommissioned")
	fl.StringVar(&q.Type, "type", "", "only devices of this type")
	fl.StringVar(&q.Tag, "tag", "", "only devices with this tag")
	fl.StringVar(&q.Group, "group", "", "only devices in this group")
	fl.StringVar(&q.Filter, "filter", "", "only devices matching this filter expression")
	addPageFlags(cmd, &q, &all)
	return cmd
}

// addPageFlags registers --limit, --cursor and --all.
func addPageFlags(cmd *cobra.Command, q *client.DeviceQuery, all *bool) {
	cmd.Flags().IntVar(&q.Limit, "limit", 0, "devices per page (default: the server's)")
	cmd.Flags().StringVar(&q.Cursor, "cursor", "", "continue from the next_cursor of a previous page")
	cmd.Flags().BoolVar(all, "all", false, "follow the cursors and list every page")
}

type pageFunc func(context.Context, client.DeviceQuery) (*api.DeviceList, error)

// listDevices prints one page, or with all every page merged into one list.
func (s *session) listDevices(all bool, q client.DeviceQuery, one, every pageFunc) error {
	if q.Limit < 0 {
		return errors.New("--limit must be positive")
	}
	get := one
	if all {
		get = every
	}
	page, err := get(s.e.ctx, q)
	if err != nil {
		return err
	}
	if s.json {
		return writeJSON(s.e.stdout, page)
	}
	if err := deviceTable(page.Devices, time.Now()).write(s.e.stdout); err != nil {
		return err
	}
	if page.Next != "" {
		fmt.Fprintf(s.e.stderr, "more devices: run again with --cursor %s, or with --all\n", page.Next)
	}
	return nil
}

func deviceTable(ds []api.Device, now time.Time) *table {
	t := newTable("ID", "SERIAL", "TYPE", "STATUS", "FIRMWARE", "TAGS", "LAST SEEN", "FLAGS")
	for _, d := range ds {
		var flags []string
		if d.CloneSuspect {
			flags = append(flags, "CLONE?")
		}
		if d.KeyRevoked {
			flags = append(flags, "KEY-REVOKED")
		}
		t.row(d.ID, d.Serial, d.DeviceType, d.Status, d.FirmwareVersion, list(d.Tags), ago(d.LastSeen, now), strings.Join(flags, ","))
	}
	// FLAGS is usually empty: show nothing rather than a column of dashes.
	for _, r := range t.rows[1:] {
		if r[7] == "-" {
			r[7] = ""
		}
	}
	return t
}

func newDeviceShowCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one device",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			d, err := s.api.Device(s.e.ctx, args[0])
			if err != nil {
				return about(args[0], err)
			}
			if s.json {
				return writeJSON(s.e.stdout, d)
			}
			return deviceFields(d).write(s.e.stdout)
		}),
	}
}

func deviceFields(d *api.Device) *fields {
	f := &fields{}
	f.add("ID", d.ID)
	f.add("Serial", d.Serial)
	f.add("Type", d.DeviceType)
	f.add("MAC", d.MAC)
	f.add("HW revision", d.HWRevision)
	f.add("Status", d.Status)
	key := d.KeyFingerprint
	if d.KeyRevoked {
		key = strings.TrimSpace(key + " (revoked)")
	}
	f.add("Key", key)
	f.add("Clone suspect", yesNo(d.CloneSuspect))
	f.add("Firmware", d.FirmwareVersion)
	f.add("OS", d.OS)
	f.add("Kernel", d.Kernel)
	f.add("Hostname", d.Hostname)
	f.add("Tags", strings.Join(d.Tags, ", "))
	f.add("Packages", strconv.Itoa(d.PackageCount))
	f.add("First seen", stamp(d.FirstSeen))
	f.add("Last seen", stamp(d.LastSeen))
	f.add("Created", stamp(&d.CreatedAt))
	f.add("Updated", stamp(&d.UpdatedAt))
	f.add("Attributes", count(len(d.Attributes)))
	for _, p := range pairs(d.Attributes) {
		f.sub(p)
	}
	f.add("Interfaces", count(len(d.Interfaces)))
	for _, ni := range d.Interfaces {
		line := ni.Name
		if ni.MAC != "" {
			line += " " + ni.MAC
		}
		if len(ni.Addrs) > 0 {
			line += " " + strings.Join(ni.Addrs, " ")
		}
		f.sub(line)
	}
	return f
}

// count heads a list in a show view: the number of entries, or "none".
func count(n int) string {
	if n == 0 {
		return "none"
	}
	return strconv.Itoa(n)
}

func newDevicePackagesCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "packages ID",
		Short: "List the packages a device last reported",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			ps, err := s.api.DevicePackages(s.e.ctx, args[0])
			if err != nil {
				return about(args[0], err)
			}
			if s.json {
				return writeJSON(s.e.stdout, ps)
			}
			t := newTable("NAME", "VERSION", "ARCH", "SOURCE", "PURL")
			for _, p := range ps.Packages {
				t.row(p.Name, p.Version, p.Arch, p.Source, p.PURL)
			}
			return t.write(s.e.stdout)
		}),
	}
}

func newDeviceEventsCmd(f *apiFlags) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "events ID",
		Short: "List a device's recent events, newest first",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			if limit < 0 {
				return errors.New("--limit must be positive")
			}
			es, err := s.api.DeviceEvents(s.e.ctx, args[0], limit)
			if err != nil {
				return about(args[0], err)
			}
			if s.json {
				return writeJSON(s.e.stdout, es)
			}
			t := newTable("AT", "LEVEL", "KIND", "MESSAGE", "DATA")
			for _, ev := range es.Events {
				t.row(stamp(&ev.At), ev.Level, ev.Kind, ev.Message, strings.Join(pairs(ev.Data), " "))
			}
			return t.write(s.e.stdout)
		}),
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many events (default: the server's)")
	return cmd
}

// newDeviceStatusCmd builds accept, reject and decommission: each takes several IDs and
// reports on each.
func newDeviceStatusCmd(f *apiFlags, verb, short, done string, call func(*client.Client, context.Context, string) (*api.Device, error)) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " ID...",
		Short: short,
		Args:  withUsage(cobra.MinimumNArgs(1)),
		RunE: f.run(func(s *session, ids []string) error {
			changed := api.DeviceList{Devices: []api.Device{}}
			err := eachID(s, verb, ids, func(id string) error {
				d, err := call(s.api, s.e.ctx, id)
				if err != nil {
					return err
				}
				changed.Devices = append(changed.Devices, *d)
				if !s.json {
					fmt.Fprintf(s.e.stdout, "%s: %s\n", d.ID, done)
				}
				return nil
			})
			if s.json {
				if jerr := writeJSON(s.e.stdout, changed); jerr != nil {
					return jerr
				}
			}
			return err
		}),
	}
}

func newDeviceRevokeKeyCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke-key ID",
		Short: "Refuse a device's current key; the device must enroll again",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			d, err := s.api.RevokeKey(s.e.ctx, args[0])
			if err != nil {
				return about(args[0], err)
			}
			if s.json {
				return writeJSON(s.e.stdout, d)
			}
			fmt.Fprintf(s.e.stdout, "%s: key %s revoked\n", d.ID, d.KeyFingerprint)
			return nil
		}),
	}
}

func newDeviceTagCmd(f *apiFlags) *cobra.Command {
	var add, remove []string
	cmd := &cobra.Command{
		Use:   "tag ID --add a,b --remove c",
		Short: "Add and remove a device's tags",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			if len(add) == 0 && len(remove) == 0 {
				return errors.New("nothing to do: give --add or --remove")
			}
			d, err := s.api.Tag(s.e.ctx, args[0], add, remove)
			if err != nil {
				return about(args[0], err)
			}
			if s.json {
				return writeJSON(s.e.stdout, d)
			}
			tags := strings.Join(d.Tags, ", ")
			if tags == "" {
				tags = "none"
			}
			fmt.Fprintf(s.e.stdout, "%s: tags %s\n", d.ID, tags)
			return nil
		}),
	}
	cmd.Flags().StringSliceVar(&add, "add", nil, "tags to add (comma-separated or repeated)")
	cmd.Flags().StringSliceVar(&remove, "remove", nil, "tags to remove (comma-separated or repeated)")
	return cmd
}

func newDevicePreauthorizeCmd(f *apiFlags) *cobra.Command {
	var req api.PreauthorizeRequest
	var keyFile string
	cmd := &cobra.Command{
		Use:   "preauthorize --serial S --type T --public-key BASE64|--public-key-file F",
		Short: "Register a device and its key before it first connects",
		Long: `Register a device's identity and Ed25519 public key before it first connects. Its first
enrollment with exactly that identity and key is accepted without further approval.`,
		Args: cobra.NoArgs,
		RunE: f.run(func(s *session, _ []string) error {
			if keyFile != "" {
				b, err := readKeyFile(s.e.stdin, keyFile)
				if err != nil {
					return err
				}
				req.PublicKey = strings.TrimSpace(string(b))
			}
			d, err := s.api.Preauthorize(s.e.ctx, req)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, d)
			}
			fmt.Fprintf(s.e.stdout, "%s: preauthorized %s %s, key %s\n", d.ID, d.DeviceType, d.Serial, d.KeyFingerprint)
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Serial, "serial", "", "device serial number")
	fl.StringVar(&req.DeviceType, "type", "", "device type")
	fl.StringVar(&req.MAC, "mac", "", "device MAC address")
	fl.StringVar(&req.HWRevision, "hw-rev", "", "hardware revision")
	fl.StringVar(&req.PublicKey, "public-key", "", "the device's Ed25519 public key, base64")
	fl.StringVar(&keyFile, "public-key-file", "", "file holding the base64 public key (- for stdin)")
	fl.StringSliceVar(&req.Tags, "tag", nil, "tags to give the device (comma-separated or repeated)")
	fl.StringToStringVar(&req.Attributes, "attr", nil, "attribute key=value (repeatable)")
	_ = cmd.MarkFlagRequired("serial") // the flags exist; these cannot fail
	_ = cmd.MarkFlagRequired("type")
	cmd.MarkFlagsOneRequired("public-key", "public-key-file")
	cmd.MarkFlagsMutuallyExclusive("public-key", "public-key-file")
	return cmd
}

// maxKeyFile bounds what --public-key-file reads; a base64 Ed25519 key is 44 bytes.
const maxKeyFile = 4 << 10

func readKeyFile(stdin io.Reader, name string) ([]byte, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("public key file: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("public key file %s: %w", name, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("public key file %s: larger than %d bytes; want one base64 Ed25519 key", name, maxKeyFile)
	}
	return b, nil
}
