package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/client"
)

func newReleaseCmd(e *env) *cobra.Command {
	cmd := newCommandGroup("release", "Manage firmware releases: create, upload artifacts, publish, withdraw")
	f := addAPIFlags(cmd, e)
	cmd.AddCommand(newReleaseCreateCmd(f), newReleaseUploadCmd(f), newReleaseSBOMCmd(f), newReleaseLsCmd(f),
		newReleaseShowCmd(f), newReleaseDeltaCmd(f), newReleaseStateCmd(f, "publish"), newReleaseStateCmd(f, "withdraw"))
	return cmd
}

func newReleaseCreateCmd(f *apiFlags) *cobra.Command {
	var req api.ReleaseRequest
	cmd := &cobra.Command{
		Use:   "create NAME VERSION --type T",
		Short: "Create a draft release",
		Args:  withUsage(cobra.ExactArgs(2)),
		RunE: f.run(func(s *session, args []string) error {
			req.Name, req.Version = args[0], args[1]
			r, err := s.api.CreateRelease(s.e.ctx, req)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, r)
			}
			fmt.Fprintf(s.e.stdout, "created draft release %s (%s %s)\n", r.ID, r.Name, r.Version)
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&req.DeviceTypes, "type", nil, "compatible device types (comma-separated or repeated)")
	fl.StringSliceVar(&req.HWRevisions, "hw-rev", nil, "compatible hardware revisions (default: all)")
	fl.StringVar(&req.Notes, "notes", "", "release notes")
	_ = cmd.MarkFlagRequired("type")
	return cmd
}

func newReleaseUploadCmd(f *apiFlags) *cobra.Command {
	var role, deltaFrom, name string
	var noProgress bool
	cmd := &cobra.Command{
		Use:   "upload RELEASE FILE [--role full|package|script|delta] [--delta-from VERSION]",
		Short: "Upload an artifact to a draft release, with a progress bar",
		Args:  withUsage(cobra.ExactArgs(2)),
		RunE: f.run(func(s *session, args []string) error {
			path := args[1]
			file, err := os.Open(path)
			if err != nil {
				return err
			}
			defer file.Close()
			fi, err := file.Stat()
			if err != nil {
				return err
			}
			// Hash first, so the server can refuse bytes that changed or got lost in transit.
			h := sha256.New()
			if _, err := io.Copy(h, file); err != nil {
				return fmt.Errorf("hash %s: %w", path, err)
			}
			if _, err := file.Seek(0, io.SeekStart); err != nil {
				return err
			}
			if name == "" {
				name = filepath.Base(path)
			}
			var body io.Reader = file
			if !noProgress && !s.json {
				// The HTTP transport reads the body, and so draws the bar, on its own goroutine,
				// which may outlive a failed request: gate the bar's writes and close the gate
				// before anything else is printed.
				gate := &gatedWriter{w: s.e.stderr}
				defer gate.close()
				bar := progressbar.NewOptions64(fi.Size(),
					progressbar.OptionSetWriter(gate), progressbar.OptionSetDescription(name),
					progressbar.OptionShowBytes(true), progressbar.OptionShowTotalBytes(true),
					progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionFullWidth(),
					progressbar.OptionOnCompletion(func() { fmt.Fprintln(gate) }))
				r := progressbar.NewReader(file, bar)
				body = &r
			}
			a, err := s.api.UploadArtifact(s.e.ctx, args[0], client.Upload{
				Name: name, Role: role, DeltaFrom: deltaFrom, Size: fi.Size(), SHA256: hex.EncodeToString(h.Sum(nil)),
			}, body)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, a)
			}
			fmt.Fprintf(s.e.stdout, "uploaded %s: %d bytes, sha256 %s\n", a.Name, a.Size, a.SHA256)
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&role, "role", "full", "artifact role: full, package, script or delta")
	fl.StringVar(&deltaFrom, "delta-from", "", "for a delta: the version it applies to")
	fl.StringVar(&name, "name", "", "artifact name (default: the file name)")
	fl.BoolVar(&noProgress, "no-progress", false, "do not draw a progress bar")
	return cmd
}

func newReleaseSBOMCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "sbom RELEASE FILE",
		Short: "Attach a CycloneDX or SPDX JSON SBOM to a draft release",
		Args:  withUsage(cobra.ExactArgs(2)),
		RunE: f.run(func(s *session, args []string) error {
			file, err := os.Open(args[1])
			if err != nil {
				return err
			}
			defer file.Close()
			if err := s.api.AttachSBOM(s.e.ctx, args[0], file); err != nil {
				return err
			}
			fmt.Fprintf(s.e.stdout, "attached SBOM %s to %s\n", filepath.Base(args[1]), args[0])
			return nil
		}),
	}
}

func newReleaseLsCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List releases",
		Args:  withUsage(cobra.NoArgs),
		RunE: f.run(func(s *session, _ []string) error {
			l, err := s.api.Releases(s.e.ctx)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, l)
			}
			t := newTable("ID", "NAME", "VERSION", "STATE", "TYPES", "ARTIFACTS", "COMPONENTS", "CREATED")
			for _, r := range l.Releases {
				t.row(r.ID, r.Name, r.Version, r.State, list(r.DeviceTypes), strconv.Itoa(len(r.Artifacts)), strconv.Itoa(r.Components), stamp(&r.CreatedAt))
			}
			return t.write(s.e.stdout)
		}),
	}
}

func newReleaseShowCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show RELEASE",
		Short: "Show a release and its artifacts",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			r, err := s.api.Release(s.e.ctx, args[0])
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, r)
			}
			var fs fields
			fs.add("ID", r.ID)
			fs.add("Name", r.Name)
			fs.add("Version", r.Version)
			fs.add("State", r.State)
			fs.add("Device types", list(r.DeviceTypes))
			fs.add("HW revisions", list(r.HWRevisions))
			fs.add("SBOM", fmt.Sprintf("%s, %d components", r.SBOMFormat, r.Components))
			fs.add("Created", stamp(&r.CreatedAt))
			fs.add("Published", stamp(r.PublishedAt))
			fs.add("Notes", r.Notes)
			fs.add("Artifacts", strconv.Itoa(len(r.Artifacts)))
			for _, a := range r.Artifacts {
				line := fmt.Sprintf("%s %s %d bytes sha256:%s", a.Name, a.Role, a.Size, a.SHA256)
				if a.DeltaFrom != "" {
					line += " from " + a.DeltaFrom
				}
				fs.sub(line)
			}
			return fs.write(s.e.stdout)
		}),
	}
}

func newReleaseStateCmd(f *apiFlags, verb string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " RELEASE",
		Short: map[string]string{"publish": "Publish a draft release", "withdraw": "Withdraw a published release"}[verb],
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			do := s.api.Publish
			if verb == "withdraw" {
				do = s.api.Withdraw
			}
			r, err := do(s.e.ctx, args[0])
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, r)
			}
			fmt.Fprintf(s.e.stdout, "release %s is %s\n", r.ID, r.State)
			return nil
		}),
	}
}

// gatedWriter serialises writes and drops those that come after close.
type gatedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return len(p), nil
	}
	return g.w.Write(p)
}

func (g *gatedWriter) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

func newReleaseDeltaCmd(f *apiFlags) *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "delta RELEASE --from VERSION",
		Short: "Compute a delta artifact from an earlier version's full image (server side)",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			a, err := s.api.ComputeDelta(s.e.ctx, args[0], from)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, a)
			}
			fmt.Fprintf(s.e.stdout, "delta %s: %d bytes, sha256 %s\n", a.Name, a.Size, a.SHA256)
			return nil
		}),
	}
	cmd.Flags().StringVar(&from, "from", "", "the version devices update from")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}
