package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/rampart-iot/rampart/internal/config"
	"github.com/rampart-iot/rampart/internal/fleet"
	"github.com/rampart-iot/rampart/internal/server"
	"github.com/rampart-iot/rampart/internal/tuf"
)

// newTUFCmd groups the commands that manage the fleet's TUF repository. keygen and sign-root
// run wherever the offline root keys are kept; the others run on the server host, on the
// server's database, like `rampart admin`.
func newTUFCmd(e *env) *cobra.Command {
	cmd := newCommandGroup("tuf", "Manage the fleet's TUF repository and its keys (offline root, rotation)")
	cmd.AddCommand(newTUFKeygenCmd(e), newTUFSignRootCmd(e), newTUFInitCmd(e), newTUFImportRootCmd(e), newTUFRotateCmd(e))
	return cmd
}

func newTUFKeygenCmd(e *env) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Make an Ed25519 key for an offline root holder; prints its public key",
		Args:  withUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := f.WriteString(base64.StdEncoding.EncodeToString(priv.Seed()) + "\n"); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, base64.StdEncoding.EncodeToString(pub))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file for the private key (created 0600; must not exist)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func readSeed(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	seed, err := base64.StdEncoding.DecodeString(string(trimNewline(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s is not a key made by `rampart tuf keygen`", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func newTUFSignRootCmd(e *env) *cobra.Command {
	var key, out string
	cmd := &cobra.Command{
		Use:   "sign-root ROOT.json --key FILE --out SIGNED.json",
		Short: "Add an offline root key's signature to a root (run where the key is kept)",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := readSeed(key)
			if err != nil {
				return err
			}
			root, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			signed, err := tuf.SignRoot(root, k)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, signed, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "signed %s with key %s\n", out, base64.StdEncoding.EncodeToString(k.Public().(ed25519.PublicKey)))
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "private key file from `rampart tuf keygen`")
	cmd.Flags().StringVar(&out, "out", "", "where to write the signed root")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// serverSide builds a command that opens the server's TUF repository from the server's
// storage flags.
func serverSide(e *env, cmd *cobra.Command, run func(cmd *cobra.Command, a *server.TUFAdmin, args []string) error) *cobra.Command {
	cfg := config.ServerFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := config.LoadServer(cmd.Flags(), cfg, e.getenv); err != nil {
			return err
		}
		log, err := newLogger(e.stderr, "warn", "text")
		if err != nil {
			return err
		}
		a, err := server.OpenTUFAdmin(cmd.Context(), *cfg, log)
		if err != nil {
			return err
		}
		defer a.Close()
		return run(cmd, a, args)
	}
	return cmd
}

func newTUFInitCmd(e *env) *cobra.Command {
	var keys []string
	var threshold int
	var out string
	cmd := &cobra.Command{
		Use:   "init --root-key PUB... --threshold N --out ROOT.json",
		Short: "Create the fleet's TUF repository with an offline root (before the first server start)",
		Args:  withUsage(cobra.NoArgs),
	}
	cmd.Flags().StringSliceVar(&keys, "root-key", nil, "public key of an offline root holder (base64; repeat)")
	cmd.Flags().IntVar(&threshold, "threshold", 1, "how many root keys must sign a root")
	cmd.Flags().StringVar(&out, "out", "", "where to write the root to sign")
	_ = cmd.MarkFlagRequired("root-key")
	_ = cmd.MarkFlagRequired("out")
	return serverSide(e, cmd, func(cmd *cobra.Command, a *server.TUFAdmin, _ []string) error {
		pubs := make([]ed25519.PublicKey, 0, len(keys))
		for _, k := range keys {
			pub, err := fleet.ParsePublicKey(k)
			if err != nil {
				return fmt.Errorf("--root-key %s: %w", k, err)
			}
			pubs = append(pubs, pub)
		}
		if threshold < 1 || threshold > len(pubs) {
			return errors.New("--threshold must be between 1 and the number of root keys")
		}
		root, err := a.InitOffline(cmd.Context(), pubs, threshold)
		if err != nil {
			return err
		}
		if err := os.WriteFile(out, root, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "wrote %s; have %d root key holder(s) sign it with `rampart tuf sign-root`, then run `rampart tuf import-root`\n", out, threshold)
		return nil
	})
}

func newTUFImportRootCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import-root SIGNED.json",
		Short: "Install a root signed by a threshold of its keys",
		Args:  withUsage(cobra.ExactArgs(1)),
	}
	return serverSide(e, cmd, func(cmd *cobra.Command, a *server.TUFAdmin, args []string) error {
		signed, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		if err := a.ImportRoot(cmd.Context(), signed); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, "root imported")
		return nil
	})
}

func newTUFRotateCmd(e *env) *cobra.Command {
	var signers []string
	var out string
	cmd := &cobra.Command{
		Use:   "rotate ROLE [--root-signer KEYFILE...] [--out ROOT.json]",
		Short: "Replace a role's keys (timestamp, snapshot, targets, releases; root with new offline keys)",
		Long: "Rotate gives the role a new online key. Rotating a top-level role needs a new root\n" +
			"signed by the root key holders: pass their key files with --root-signer, or sign the root\n" +
			"written to --out with `rampart tuf sign-root` and install it with `rampart tuf import-root`.",
		Args: withUsage(cobra.ExactArgs(1)),
	}
	cmd.Flags().StringSliceVar(&signers, "root-signer", nil, "offline root key file to sign the new root with (repeat)")
	cmd.Flags().StringVar(&out, "out", "", "where to write a root that still needs signatures")
	return serverSide(e, cmd, func(cmd *cobra.Command, a *server.TUFAdmin, args []string) error {
		var opts tuf.RotateOptions
		for _, f := range signers {
			k, err := readSeed(f)
			if err != nil {
				return err
			}
			opts.RootSigners = append(opts.RootSigners, k)
		}
		err := a.Repo.Rotate(cmd.Context(), args[0], opts)
		if errors.Is(err, tuf.ErrRootSignaturesNeeded) {
			root, uerr := a.Repo.UnsignedRoot(cmd.Context())
			if uerr != nil {
				return uerr
			}
			if out == "" {
				return errors.New("the new root needs offline signatures: run again with --out ROOT.json")
			}
			if err := os.WriteFile(out, root, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "role %s rotated; the new root in %s needs signatures (sign-root, then import-root); the old keys sign until then\n", args[0], out)
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "role %s rotated\n", args[0])
		return nil
	})
}
