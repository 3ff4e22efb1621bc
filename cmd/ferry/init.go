package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"ferry/internal/pki"
)

func initCmd() *cobra.Command {
	var dir string
	var nodes []string
	cmd := &cobra.Command{
		Use:   "init --dir DIR --nodes n1,n2,...",
		Short: "Create the cluster CA and node certificates for mutual TLS",
		Long: "Create DIR with a cluster CA (ca.crt, ca.key) and a certificate and key\n" +
			"per node (<id>.crt, <id>.key). If DIR already holds a CA, it is kept and\n" +
			"only the missing node certificates are added; no file is overwritten.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			created, err := pki.InitFiles(dir, nodes)
			for _, path := range created {
				fmt.Fprintln(cmd.OutOrStdout(), "created", path)
			}
			if err != nil {
				return err
			}
			if len(created) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to do: the CA and every node certificate exist in", dir)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "cluster directory")
	cmd.Flags().StringSliceVar(&nodes, "nodes", nil, "node ids, comma-separated")
	cmd.MarkFlagRequired("dir")
	cmd.MarkFlagRequired("nodes")
	return cmd
}
