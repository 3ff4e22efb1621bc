package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"ferry/internal/msgload"
	"ferry/msg"
)

func msgloadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "msgload",
		Short:  "Message load for the forwarding bench and demo: a checking receiver, a steady sender",
		Hidden: true,
	}
	var rc msgload.RecvConfig
	var expect string
	recv := &cobra.Command{
		Use:   "recv",
		Short: "Receive numbered messages, check every sender's numbers, time them; print a JSON summary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if expect != "" {
				for _, s := range strings.Split(expect, ",") {
					id, err := msg.ParseID(strings.TrimSpace(s))
					if err != nil {
						return fmt.Errorf("--expect-from: %w", err)
					}
					rc.ExpectFrom = append(rc.ExpectFrom, id)
				}
			}
			stop := stopOn(syscall.SIGUSR1, syscall.SIGTERM)
			return checked(msgload.Recv(context.WithoutCancel(cmd.Context()), rc, stop, os.Stdout))
		},
	}
	recv.Flags().StringVar(&expect, "expect-from", "", "the senders' ids, comma-separated: stop once each has ended")
	recv.Flags().IntVar(&rc.Senders, "senders", 0, "stop once this many senders have ended")
	recv.Flags().IntVar(&rc.Count, "count", 0, "stop after this many data messages")

	var sc msgload.SendConfig
	var to string
	var index int
	send := &cobra.Command{
		Use:   "send",
		Short: "Send numbered, timestamped messages to --to at a steady --rate; print a JSON summary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := msg.ParseID(to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			if index < 0 {
				return fmt.Errorf("--index %d: must be at least 0", index)
			}
			sc.To, sc.Index = id, uint32(index)
			stop := stopOn(syscall.SIGUSR1, syscall.SIGTERM)
			return checked(msgload.Send(context.WithoutCancel(cmd.Context()), sc, stop, os.Stdout))
		},
	}
	send.Flags().StringVar(&to, "to", "", "the receiver's id")
	send.Flags().Float64Var(&sc.Rate, "rate", 100, "messages per second")
	send.Flags().IntVar(&sc.Count, "count", 1000, "messages to send (0: until SIGUSR1 or SIGTERM)")
	send.Flags().IntVar(&index, "index", 0, "this sender's index, carried in every payload")
	send.Flags().IntVar(&sc.Size, "size", msgload.PayloadLen, "payload bytes")
	send.Flags().IntVar(&sc.Window, "window", msgload.DefaultWindow, "messages awaiting their outcome before the sender waits")
	send.MarkFlagRequired("to")
	cmd.AddCommand(recv, send)
	return cmd
}

// stopOn returns a channel closed at the first of sigs.
func stopOn(sigs ...os.Signal) <-chan struct{} {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	stop := make(chan struct{})
	go func() {
		<-ch
		close(stop)
	}()
	return stop
}

// checked turns msgload.ErrChecks into exit status 1 without a second
// message: the summary line says what was wrong.
func checked(err error) error {
	if errors.Is(err, msgload.ErrChecks) {
		fmt.Fprintln(os.Stderr, "ferry msgload:", err)
		return exitError{code: 1}
	}
	return err
}
