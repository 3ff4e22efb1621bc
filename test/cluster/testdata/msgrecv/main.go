// Command msgrecv is a job's process that receives numbered messages
// through its node's message endpoint (package ferry/msg) and checks
// them: from each sender 1, 2, 3, … with nothing missing, repeated or out
// of order, then "end N" with N the last number. It prints "ready <id>",
// then "ok <sender> <N>" per sender that ended, or "error ..." and exits 1.
// Every 25 messages of a sender it tells the sender "ack K" (K: how many
// so far), and "final K" once the sender ended: the messages it sends
// while it is being moved are checked by the sender. It exits once the
// number of senders given as its argument have ended.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"ferry/msg"
)

func main() {
	senders := 1
	if len(os.Args) > 1 {
		senders, _ = strconv.Atoi(os.Args[1])
	}
	c, err := msg.Dial()
	if err != nil {
		fmt.Println("error dial:", err)
		os.Exit(1)
	}
	fmt.Println("ready", c.ID())
	last := map[msg.ID]int{}
	for ended := 0; ended < senders; {
		from, p, err := c.Recv(context.Background())
		if err != nil {
			fmt.Println("error recv:", err)
			os.Exit(1)
		}
		s := string(p)
		if n, ok := strings.CutPrefix(s, "end "); ok {
			if n != strconv.Itoa(last[from]) {
				fmt.Printf("error %v ended at %s, last received %d\n", from, n, last[from])
				os.Exit(1)
			}
			if err := c.Send(context.Background(), from, []byte(fmt.Sprintf("final %d", last[from]/25*25))); err != nil {
				fmt.Println("error final:", err)
				os.Exit(1)
			}
			fmt.Printf("ok %v %s\n", from, n)
			ended++
			continue
		}
		i, err := strconv.Atoi(s)
		if err != nil || i != last[from]+1 {
			fmt.Printf("error from %v: %q after %d\n", from, s, last[from])
			os.Exit(1)
		}
		last[from] = i
		if i%25 == 0 {
			if os.Getenv("MSGRECV_TRACE") != "" {
				fmt.Fprintln(os.Stderr, "ack", i, "pending", c.Pending())
			}
			if err := c.Send(context.Background(), from, []byte(fmt.Sprintf("ack %d", i))); err != nil {
				fmt.Println("error ack:", err)
				os.Exit(1)
			}
			if os.Getenv("MSGRECV_TRACE") != "" {
				fmt.Fprintln(os.Stderr, "acked", i)
			}
		}
	}
}
