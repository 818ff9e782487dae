package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rampart-iot/rampart/internal/api"
	"github.com/rampart-iot/rampart/internal/client"
)

func newGroupCmd(e *env) *cobra.Command {
	cmd := newCommandGroup("group", "Manage device groups: static member lists or dynamic filters")
	f := addAPIFlags(cmd, e)
	cmd.AddCommand(
		newGroupLsCmd(f),
		newGroupCreateCmd(f),
		newGroupShowCmd(f),
		newGroupRmCmd(f),
		newGroupMembersCmd(f, "add", "Add devices to a static group", true),
		newGroupMembersCmd(f, "remove", "Remove devices from a static group", false),
		newGroupDevicesCmd(f),
	)
	return cmd
}

func groupKind(g api.Group) string {
	if g.Dynamic {
		return "dynamic"
	}
	return "static"
}

func newGroupLsCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List groups",
		Args:  cobra.NoArgs,
		RunE: f.run(func(s *session, _ []string) error {
			gs, err := s.api.Groups(s.e.ctx)
			if err != nil {
				return err
			}
			if s.json {
				return writeJSON(s.e.stdout, gs)
			}
			t := newTable("NAME", "KIND", "FILTER", "DESCRIPTION")
			for _, g := range gs.Groups {
				t.row(g.Name, groupKind(g), g.Filter, g.Description)
			}
			return t.write(s.e.stdout)
		}),
	}
}

func newGroupCreateCmd(f *apiFlags) *cobra.Command {
	var g api.Group
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a group: dynamic with --filter, static without",
		Long: `Create a group. With --filter the group is dynamic: it holds every device the filter
expression matches, now and later. Without, it is static: add devices with 'rampart group add'.`,
		Args: withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			g.Name = args[0]
			out, err := s.api.CreateGroup(s.e.ctx, g)
			if err != nil {
				return about("group "+args[0], err)
			}
			if s.json {
				return writeJSON(s.e.stdout, out)
			}
			fmt.Fprintf(s.e.stdout, "created %s group %s\n", groupKind(*out), out.Name)
			return nil
		}),
	}
	cmd.Flags().StringVar(&g.Filter, "filter", "", `filter expression of a dynamic group, e.g. 'type == "gw" && "prod" in tags'`)
	cmd.Flags().StringVar(&g.Description, "description", "", "what the group is for")
	return cmd
}

func newGroupShowCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show one group",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			g, err := s.api.Group(s.e.ctx, args[0])
			if err != nil {
				return about("group "+args[0], err)
			}
			if s.json {
				return writeJSON(s.e.stdout, g)
			}
			fs := &fields{}
			fs.add("Name", g.Name)
			fs.add("Kind", groupKind(*g))
			fs.add("Filter", g.Filter)
			fs.add("Description", g.Description)
			fs.add("Created", stamp(&g.CreatedAt))
			return fs.write(s.e.stdout)
		}),
	}
}

func newGroupRmCmd(f *apiFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Delete a group; its devices stay",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			if err := s.api.DeleteGroup(s.e.ctx, args[0]); err != nil {
				return about("group "+args[0], err)
			}
			if !s.json {
				fmt.Fprintf(s.e.stdout, "deleted group %s\n", args[0])
			}
			return nil
		}),
	}
}

// newGroupMembersCmd builds add and remove. The server changes all members or none, so one
// unknown device fails the whole command and nothing changes.
func newGroupMembersCmd(f *apiFlags, verb, short string, adding bool) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " NAME ID...",
		Short: short,
		Args:  withUsage(cobra.MinimumNArgs(2)),
		RunE: f.run(func(s *session, args []string) error {
			name, ids := args[0], args[1:]
			var add, remove []string
			if adding {
				add = ids
			} else {
				remove = ids
			}
			if err := s.api.ChangeMembers(s.e.ctx, name, add, remove); err != nil {
				return about("group "+name, err)
			}
			if !s.json {
				msg := "added %d device(s) to group %s\n"
				if !adding {
					msg = "removed %d device(s) from group %s\n"
				}
				fmt.Fprintf(s.e.stdout, msg, len(ids), name)
			}
			return nil
		}),
	}
}

func newGroupDevicesCmd(f *apiFlags) *cobra.Command {
	var q client.DeviceQuery
	var all bool
	cmd := &cobra.Command{
		Use:   "devices NAME",
		Short: "List a group's devices",
		Args:  withUsage(cobra.ExactArgs(1)),
		RunE: f.run(func(s *session, args []string) error {
			name := args[0]
			one := func(ctx context.Context, q client.DeviceQuery) (*api.DeviceList, error) {
				return s.api.GroupDevices(ctx, name, q)
			}
			every := func(ctx context.Context, q client.DeviceQuery) (*api.DeviceList, error) {
				return s.api.AllGroupDevices(ctx, name, q)
			}
			return about("group "+name, s.listDevices(all, q, one, every))
		}),
	}
	addPageFlags(cmd, &q, &all)
	return cmd
}
