package main
import (_ "golang.org/x/sys/unix"; _ "github.com/spf13/cobra")
func main(){}
