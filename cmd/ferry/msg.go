package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"ferry/msg"
)

func sendCmd() *cobra.Command {
	var stdin bool
	cmd := &cobra.Command{
		Use:   "send ID [MESSAGE]",
		Short: "Send a message to a process by its id (from anywhere in the cluster); returns once delivered",
		Long: "Send MESSAGE (or, with -, standard input) to the process ID (e.g. n1-4.101, as\n" +
			"`ferry ps` shows) through the local node, wherever the process runs now. It\n" +
			"returns when the receiver's node has it, or fails naming the reason (unknown id,\n" +
			"ended, unreachable before the deadline). The sender is the CLI: an id of the\n" +
			"node's own (<node>-0.N), which cannot receive answers.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var payload []byte
			switch {
			case len(args) == 2 && args[1] != "-":
				payload = []byte(args[1])
			case stdin || (len(args) == 2 && args[1] == "-"):
				b, err := io.ReadAll(io.LimitReader(os.Stdin, msg.MaxPayload+1))
				if err != nil {
					return err
				}
				payload = b
			default:
				return errors.New("no message: give it as an argument, or - for standard input")
			}
			if len(payload) > msg.MaxPayload {
				return fmt.Errorf("message over %d bytes", msg.MaxPayload)
			}
			_, err := client().Send(cmd.Context(), args[0], payload)
			return err
		},
	}
	cmd.Flags().BoolVar(&stdin, "stdin", false, "read the message from standard input")
	addSocketFlag(cmd)
	return cmd
}

func recvCmd() *cobra.Command {
	var count int
	var timeout time.Duration
	var raw bool
	cmd := &cobra.Command{
		Use:   "recv",
		Short: "Inside a job: receive messages sent to this process and print them",
		Long: "Receive messages through the job's message endpoint and print each as a line\n" +
			"\"FROM PAYLOAD\" (or, with --raw, the payload alone, as sent). The messages are\n" +
			"those sent to this process's own id, which it prints on standard error first;\n" +
			"`exec ferry recv` in a script keeps the script's id.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := msg.DialPath(ctx, "")
			if err != nil {
				return err
			}
			defer c.Close()
			fmt.Fprintf(os.Stderr, "ferry: receiving as %s\n", c.ID())
			for i := 0; count <= 0 || i < count; i++ {
				rctx, cancel := ctx, context.CancelFunc(func() {})
				if timeout > 0 {
					rctx, cancel = context.WithTimeout(ctx, timeout)
				}
				from, p, err := c.Recv(rctx)
				cancel()
				if err != nil {
					if errors.Is(err, context.DeadlineExceeded) {
						return fmt.Errorf("no message within %v", timeout)
					}
					return err
				}
				if raw {
					os.Stdout.Write(p)
					continue
				}
				fmt.Printf("%s %s\n", from, strings.ReplaceAll(string(p), "\n", "\\n"))
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&count, "count", "n", 0, "exit after this many messages (default: never)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "fail if no message comes within this long")
	cmd.Flags().BoolVar(&raw, "raw", false, "print payloads alone, unchanged")
	return cmd
}

func whereCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "where ID",
		Short: "Show where each node believes a job (or process id) is: location, links, creator's table",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ws, err := client().Where(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(ws)
			}
			loc := func(n string, e uint64) string { return fmt.Sprintf("%s@%d", n, e) }
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tHERE\tLINK\tCREATOR'S TABLE\tLAST LEARNT\tOUTBOX\tWAITING\tQUEUED\tHELD\tTO IT")
			for _, w := range ws {
				here, link, table, cache := "-", "-", "-", "-"
				if w.Local {
					here = "yes"
					if w.Frozen {
						here = "frozen"
					}
				}
				if w.EndedAt != "" {
					here = "ended on " + w.EndedAt
				}
				if w.Link != nil {
					link = loc(w.Link.Node, w.Link.Epoch)
				}
				if w.Table != nil {
					table = loc(w.Table.Node, w.Table.Epoch)
				}
				if w.Cache != nil {
					cache = loc(w.Cache.Node, w.Cache.Epoch)
				}
				if w.Error != "" {
					here = "? " + w.Error
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", w.Node, here, link, table, cache, w.Outbox, w.Waiting, w.Queued, w.Held, w.ToIt)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	addSocketFlag(cmd)
	return cmd
}
